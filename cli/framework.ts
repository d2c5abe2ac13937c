import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, readEnvironment, type ConfigNeeds, type Env, type OutboxConfig } from '../core/config';
import { environmentDomain } from '../core/config-module';
import { describeError } from '../core/admin-server';
import { isOutboxError, OutboxError } from '../core/errors';
import { createLogger, type Logger } from '../core/logger';
import { redact, redactDeep } from '../core/redact';
import { domainConfig } from './define-config';
import { loadDomain, type Domain } from './domain';

/**
 * A small command framework on node:util parseArgs. A command declares its flags, positionals and the
 * configuration it needs; the framework parses and validates them, loads the configuration once, runs
 * the command and turns any failure into exactly one line on stderr (a stack only with --verbose) and
 * an exit code: 2 for usage errors, 1 for configuration and runtime errors.
 */
export interface FlagSpec {
  type: 'string' | 'boolean';
  short?: string;
  description: string;
  /** Shown in help: `--at <time>`. */
  placeholder?: string;
  /** Allowed values of a string flag. */
  choices?: readonly string[];
  default?: string | boolean;
}

export interface PositionalSpec {
  name: string;
  description: string;
  required?: boolean;
}

export interface CommandContext {
  flags: Record<string, string | boolean | undefined>;
  positionals: string[];
  config: OutboxConfig;
  /** Process logger (stderr, JSON lines). Quiet (warn) for one-shot commands unless --verbose. */
  logger: Logger;
  /** Logger for client libraries used by the CLI itself (probes): silent unless --verbose. */
  libLogger: Logger;
  json: boolean;
  verbose: boolean;
  out: Output;
  env: Env;
  cwd: string;
  /**
   * The domain (schema catalog, upcasters, projections, reducers, topic routing) from --schemas,
   * OUTBOX_SCHEMAS_DIR and the config module (--config, OUTBOX_CONFIG, outbox.config.* in cwd); loaded
   * on first use, so commands that do not need it never load a config module.
   */
  domain(): Promise<Domain>;
}

export interface Command {
  /** 'status' or 'parked list'. */
  name: string;
  summary: string;
  /** Longer help text, printed after the usage. */
  description?: string;
  flags?: Record<string, FlagSpec>;
  positionals?: PositionalSpec[];
  /** Configuration the command needs (variables of other parts are validated only when set). */
  needs: ConfigNeeds;
  /** Long-running commands (relay, project) log at LOG_LEVEL; one-shot commands only warnings. */
  longRunning?: boolean;
  /** Exit code (default 0). */
  run(ctx: CommandContext): Promise<number | void>;
}

export interface CommandGroup {
  name: string;
  summary: string;
  subcommands: Command[];
}

export type Entry = Command | CommandGroup;

export function isGroup(e: Entry): e is CommandGroup {
  return (e as CommandGroup).subcommands !== undefined;
}

export class UsageError extends OutboxError {
  constructor(
    message: string,
    readonly helpFor?: string,
  ) {
    super('USAGE', message);
  }
}

export const GLOBAL_FLAGS: Record<string, FlagSpec> = {
  config: {
    type: 'string',
    placeholder: 'path',
    description: 'Config module declaring the domain (default OUTBOX_CONFIG, else outbox.config.{js,mjs,cjs,ts} in the working directory)',
  },
  schemas: {
    type: 'string',
    placeholder: 'dir',
    description: "Event schemas <dir>/<aggregate_type>/<EventType>.v<N>.avsc (default OUTBOX_SCHEMAS_DIR, else the config module's schemasDir)",
  },
  help: { type: 'boolean', short: 'h', description: 'Show this help and exit' },
  json: { type: 'boolean', description: 'Machine-readable JSON output (and JSON error lines)' },
  verbose: { type: 'boolean', short: 'v', description: 'Log details and print stack traces of errors' },
};

/** Everything written to stdout/stderr goes through `redact`. */
export class Output {
  constructor(
    private readonly stdout: NodeJS.WritableStream = process.stdout,
    private readonly stderr: NodeJS.WritableStream = process.stderr,
  ) {}

  /** A line (or lines) of human output. */
  line(text = ''): void {
    this.stdout.write(`${redact(text)}\n`);
  }

  /** Pretty-printed JSON (redacted deeply) as the result of a --json command. */
  json(value: unknown): void {
    this.stdout.write(`${JSON.stringify(redactDeep(value), jsonReplacer, 2)}\n`);
  }

  raw(text: string): void {
    this.stdout.write(redact(text));
  }

  error(text: string): void {
    this.stderr.write(`${redact(text)}\n`);
  }
}

export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

function flagUsage(name: string, spec: FlagSpec): string {
  const short = spec.short ? `-${spec.short}, ` : '    ';
  const value = spec.type === 'string' ? ` <${spec.placeholder ?? 'value'}>` : '';
  return `${short}--${name}${value}`;
}

function table(rows: Array<[string, string]>, indent = '  '): string {
  const width = Math.max(0, ...rows.map(([a]) => a.length));
  return rows.map(([a, b]) => `${indent}${a.padEnd(width)}  ${b}`).join('\n');
}

export function commandHelp(cmd: Command): string {
  const pos = (cmd.positionals ?? []).map((p) => (p.required ? `<${p.name}>` : `[${p.name}]`)).join(' ');
  const lines = [`Usage: outbox ${cmd.name}${pos ? ` ${pos}` : ''} [flags]`, '', cmd.summary];
  if (cmd.description) lines.push('', cmd.description);
  if (cmd.positionals?.length) {
    lines.push('', 'Arguments:', table(cmd.positionals.map((p) => [p.name, p.description])));
  }
  const flags = { ...(cmd.flags ?? {}), ...GLOBAL_FLAGS };
  lines.push(
    '',
    'Flags:',
    table(
      Object.entries(flags).map(([name, spec]) => {
        let d = spec.description;
        if (spec.choices) d += ` (${spec.choices.join('|')})`;
        if (spec.default !== undefined && spec.default !== false) d += ` [default: ${String(spec.default)}]`;
        return [flagUsage(name, spec), d];
      }),
    ),
  );
  const vars = neededVariables(cmd.needs);
  if (vars.length) lines.push('', `Environment: ${vars.join(', ')} (see README "Configuration reference")`);
  return lines.join('\n');
}

export function groupHelp(group: CommandGroup): string {
  return [
    `Usage: outbox ${group.name} <${group.subcommands.map((c) => c.name.split(' ')[1]).join('|')}> [flags]`,
    '',
    group.summary,
    '',
    'Commands:',
    table(group.subcommands.map((c) => [c.name, c.summary])),
    '',
    `Run "outbox ${group.name} <command> --help" for the flags of a command.`,
  ].join('\n');
}

/** The `--config <path>` (or `--config=<path>`) of a command line, before it is parsed. */
function configFlag(argv: string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config') return argv[i + 1];
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return undefined;
}

/** Commands the config module adds (`commands`); none when there is no config module or it does not load. */
function configCommands(argv: string[], env: Env, cwd: string): { entries: Entry[]; problem?: unknown } {
  try {
    const explicit = configFlag(argv);
    const domain = environmentDomain(explicit !== undefined ? { ...env, OUTBOX_CONFIG: explicit } : env, cwd);
    return { entries: domainConfig(domain.config).commands ?? [] };
  } catch (err) {
    return { entries: [], problem: err };
  }
}

export function rootHelp(entries: Entry[]): string {
  return [
    'Usage: outbox <command> [subcommand] [flags]',
    '',
    'Transactional outbox for PostgreSQL → Kafka: migrate, relay, project, inspect and audit.',
    '',
    'Commands:',
    table(entries.flatMap((e) => (isGroup(e) ? e.subcommands.map((c) => [c.name, c.summary] as [string, string]) : [[e.name, e.summary] as [string, string]]))),
    '',
    'Global flags: --help, --json, --verbose, --config <path>, --schemas <dir>',
    'Connections come from the environment (and the file OUTBOX_ENV_FILE, default .stack/env); the domain',
    '(schemas, upcasters, projections, reducers, topics) from outbox.config.* or --config, or --schemas alone.',
    'Run "outbox <command> --help" for details.',
  ].join('\n');
}

function neededVariables(needs: ConfigNeeds): string[] {
  const v: string[] = [];
  if (needs.database) v.push('DATABASE_URL', 'OUTBOX_SCHEMA');
  if (needs.kafka) v.push('KAFKA_BROKERS', 'KAFKA_SASL_*', 'KAFKA_TLS*');
  if (needs.registry) v.push('SCHEMA_REGISTRY_URL', 'SCHEMA_REGISTRY_USERNAME/PASSWORD');
  return v;
}

export interface ParsedCommandLine {
  flags: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Parse the arguments after the command name against the command's flags (strict). */
export function parseCommandLine(cmd: Command, args: string[]): ParsedCommandLine {
  const specs = { ...(cmd.flags ?? {}), ...GLOBAL_FLAGS };
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [name, s] of Object.entries(specs)) options[name] = { type: s.type, ...(s.short ? { short: s.short } : {}) };
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (err) {
    throw new UsageError(parseArgsMessage(cmd, err), cmd.name);
  }
  const flags: Record<string, string | boolean | undefined> = {};
  for (const [name, s] of Object.entries(specs)) {
    const v = parsed.values[name] ?? s.default;
    if (s.choices && typeof v === 'string' && !s.choices.includes(v)) {
      throw new UsageError(`--${name} must be one of ${s.choices.join(', ')}, got "${v}"`, cmd.name);
    }
    if (s.type === 'string' && v === '') throw new UsageError(`--${name} needs a value`, cmd.name);
    flags[name] = v;
  }
  if (flags.help) return { flags, positionals: parsed.positionals };
  const pos = cmd.positionals ?? [];
  const required = pos.filter((p) => p.required);
  if (parsed.positionals.length < required.length) {
    const missing = required[parsed.positionals.length]!;
    throw new UsageError(`missing argument <${missing.name}> (${missing.description})`, cmd.name);
  }
  if (parsed.positionals.length > pos.length) {
    throw new UsageError(`unexpected argument "${parsed.positionals[pos.length]}"`, cmd.name);
  }
  return { flags, positionals: parsed.positionals };
}

function parseArgsMessage(cmd: Command, err: unknown): string {
  const code = (err as { code?: string }).code;
  const message = err instanceof Error ? err.message : String(err);
  const quoted = /'([^']+)'/.exec(message)?.[1];
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown flag ${quoted ?? message} for "outbox ${cmd.name}"`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      if (/argument missing/.test(message)) return `flag ${(quoted ?? '').replace(/ <value>$/, '')} needs a value`;
      return `flag ${(quoted ?? '').split(' ')[0]} takes no value`;
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unexpected argument ${quoted ?? message}`;
    default:
      return message.split('\n')[0] ?? message;
  }
}

export interface RunOptions {
  env?: Env;
  out?: Output;
  cwd?: string;
}

/** One line describing any error, with the variable/problem named; never a secret. */
export function errorLine(err: unknown): string {
  if (isOutboxError(err)) return redact(err.message);
  return redact(describeError(err));
}

export function exitCodeOf(err: unknown): number {
  return isOutboxError(err, 'USAGE') ? 2 : 1;
}

/** Resolve argv to an entry and run it; returns the exit code. Never throws. */
export async function runCli(entries: Entry[], argv: string[], options: RunOptions = {}): Promise<number> {
  const out = options.out ?? new Output();
  const verbose = argv.includes('--verbose') || argv.includes('-v');
  const jsonErrors = argv.includes('--json');
  const fail = (err: unknown): number => {
    const code = exitCodeOf(err);
    const line = errorLine(err);
    const hint = err instanceof UsageError && err.helpFor ? ` (see "outbox ${err.helpFor} --help")` : '';
    if (jsonErrors) {
      out.error(
        JSON.stringify({
          error: {
            code: isOutboxError(err) ? err.code : 'INTERNAL',
            message: line,
            ...(isOutboxError(err) && Object.keys(err.details).length ? { details: redactDeep(err.details) } : {}),
          },
        }),
      );
    } else {
      out.error(`outbox: ${line}${hint}`);
    }
    if (verbose && err instanceof Error && err.stack) out.error(redact(stackWithCauses(err)));
    return code;
  };

  try {
    const [first, ...rest] = argv;
    const cwd = options.cwd ?? process.cwd();
    const rawEnv = options.env ?? process.env;
    const withConfigCommands = (): { entries: Entry[]; problem?: unknown } => {
      const extra = configCommands(argv, readEnvironment(rawEnv, cwd), cwd);
      return { entries: [...entries, ...extra.entries.filter((e) => !entries.some((b) => b.name === e.name))], ...(extra.problem !== undefined ? { problem: extra.problem } : {}) };
    };
    if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
      const target = first === 'help' ? rest[0] : undefined;
      if (target) return runCli(entries, [target, ...rest.slice(1), '--help'], options);
      out.line(rootHelp(withConfigCommands().entries));
      return first === undefined ? 2 : 0;
    }
    if (first === '--version') {
      out.line(packageVersion());
      return 0;
    }
    if (first.startsWith('-')) throw new UsageError(`unknown flag ${first}; a command comes first (see "outbox --help")`);
    let entry = entries.find((e) => e.name === first);
    if (!entry) {
      const all = withConfigCommands();
      entry = all.entries.find((e) => e.name === first);
      if (!entry && all.problem !== undefined && isOutboxError(all.problem, 'CONFIG_INVALID')) throw all.problem;
      if (!entry) throw new UsageError(`unknown command "${first}" (commands: ${all.entries.map((e) => e.name).join(', ')})`);
    }
    let cmd: Command;
    let args: string[];
    if (isGroup(entry)) {
      const [sub, ...subArgs] = rest;
      if (sub === undefined || sub === '--help' || sub === '-h') {
        out.line(groupHelp(entry));
        return sub === undefined ? 2 : 0;
      }
      const found = entry.subcommands.find((c) => c.name === `${entry.name} ${sub}`);
      if (!found) {
        throw new UsageError(`unknown subcommand "${sub}" of "outbox ${entry.name}" (expected ${entry.subcommands.map((c) => c.name.split(' ')[1]).join(', ')})`);
      }
      cmd = found;
      args = subArgs;
    } else {
      cmd = entry;
      args = rest;
    }
    const parsed = parseCommandLine(cmd, args);
    if (parsed.flags.help) {
      out.line(commandHelp(cmd));
      return 0;
    }
    const env = readEnvironment(rawEnv, cwd);
    const config = loadConfig(env, cmd.needs);
    const level = verbose ? (config.logLevel === 'info' || config.logLevel === 'silent' ? 'debug' : config.logLevel) : cmd.longRunning ? config.logLevel : 'warn';
    const logger = createLogger({ level, name: 'outbox' });
    const libLogger = verbose ? logger : createLogger({ level: 'silent' });
    let domain: Promise<Domain> | undefined;
    const loadDomainOnce = (): Promise<Domain> => {
      domain ??= loadDomain({ config, flags: parsed.flags, cwd, logger });
      return domain;
    };
    const code = await cmd.run({
      flags: parsed.flags,
      positionals: parsed.positionals,
      config,
      logger,
      libLogger,
      json: parsed.flags.json === true,
      verbose,
      out,
      env,
      cwd,
      domain: loadDomainOnce,
    });
    return code ?? 0;
  } catch (err) {
    return fail(err);
  }
}

/** The package version (package.json is one level up in a checkout, two levels up from dist/cli). */
export function packageVersion(): string {
  for (const p of [path.join(__dirname, '..', 'package.json'), path.join(__dirname, '..', '..', 'package.json')]) {
    if (existsSync(p)) return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return 'unknown';
}

function stackWithCauses(err: Error): string {
  let text = err.stack ?? err.message;
  let cause = err.cause;
  for (let i = 0; i < 4 && cause !== undefined; i++) {
    text += `\nCaused by: ${cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)}`;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return text;
}

// ---- small helpers shared by commands ----

/** `invoice/42` → { type: 'invoice', id: '42' } (the id may itself contain slashes). */
export function parseAggregateRef(value: string, what = 'aggregate'): { type: string; id: string } {
  const slash = value.indexOf('/');
  if (slash <= 0 || slash === value.length - 1) throw new UsageError(`${what} must be <aggregate_type>/<id>, got "${value}"`);
  return { type: value.slice(0, slash), id: value.slice(slash + 1) };
}

/** An ISO-8601 timestamp (or anything Date parses) → Date. */
export function parseTime(flag: string, value: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--${flag} must be a time such as 2025-01-31T12:00:00Z, got "${value}"`);
  return d;
}

/** A fixed-width text table. */
export function formatTable(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '' : String(c).replace(/\s+/g, ' '))));
  const widths = headers.map((h, i) => Math.min(80, Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length))));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => {
        const w = widths[i] ?? 0;
        return c.length > w ? `${c.slice(0, w - 1)}…` : c.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  return [fmt(headers), fmt(widths.map((w) => '-'.repeat(w))), ...cells.map(fmt)].join('\n');
}

/** RFC 4180 CSV. */
export function formatCsv(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const q = (v: string | number | null | undefined) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [headers, ...rows].map((r) => r.map(q).join(',')).join('\r\n');
}

/** Resolves on the first SIGTERM/SIGINT. */
export function onStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const handler = (sig: NodeJS.Signals) => {
      process.off('SIGTERM', handler);
      process.off('SIGINT', handler);
      resolve(sig);
    };
    process.on('SIGTERM', handler);
    process.on('SIGINT', handler);
  });
}
