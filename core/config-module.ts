import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage, isOutboxError, OutboxError } from './errors';

/**
 * The config module: one file in which a team declares its domain (schemas directory, upcasters,
 * projections, reducers, topic routing), like `vite.config.ts` or `drizzle.config.ts`. Connections stay
 * in the environment. Found as `outbox.config.{js,mjs,cjs,ts}` in the working directory, or named by
 * `--config <path>` / OUTBOX_CONFIG.
 *
 * core/ imports no other folder of ours, so here the parts are typed by what validateDomainConfig checks.
 * Their own types (ProjectionSource, AggregateReducer, UpcasterRegistry, the CLI's Entry) are named by
 * `OutboxDomainConfig` in cli/define-config.ts, the type of the public `defineConfig`; a folder reading
 * a part from here narrows it to its own type.
 */
export interface DomainDeclaration {
  /** Directory of `<aggregate_type>/<EventType>.v<N>.avsc`, relative to the config module. */
  schemasDir?: string;
  /** `{ EventType: { fromVersion: (payload) => payload } }`, or an object with `upcast` and `has` (a registry). */
  upcasters?:
    Record<string, Record<number, (payload: Record<string, unknown>) => Record<string, unknown>>> | { upcast: (...args: never[]) => unknown; has: (...args: never[]) => unknown };
  /** Read models: each has a unique `name` (audit_log is built in). */
  projections?: Array<{ name: string }>;
  /** Aggregate reducers: one per `aggregateType`. */
  reducers?: Array<{ aggregateType: string }>;
  /** Topic of an aggregate type (`{ invoice: 'billing.invoices' }`). */
  topics?: Record<string, string>;
  /** The built-in audit_log projection (default true). */
  auditLog?: boolean;
  /** Extra `outbox` commands, each with a `name`. */
  commands?: Array<{ name: string }>;
}

const FIELDS = ['schemasDir', 'upcasters', 'projections', 'reducers', 'topics', 'auditLog', 'commands'] as const;
const CONFIG_MARK = Symbol.for('kafka-outbox.config');

function fieldError(field: string, problem: string): never {
  throw new OutboxError('CONFIG_INVALID', `${field} ${problem}`, { details: { field } });
}

function isUpcasterRegistry(v: unknown): boolean {
  return typeof v === 'object' && v !== null && typeof (v as { upcast?: unknown }).upcast === 'function' && typeof (v as { has?: unknown }).has === 'function';
}

/** Check a domain config's fields; errors name the field (`projections[1]`, `topics.invoice`). */
export function validateDomainConfig(value: unknown): DomainDeclaration {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fieldError('the default export', 'must be defineConfig({ ... })');
  const c = value as Record<string, unknown>;
  for (const key of Object.keys(c)) {
    if (!(FIELDS as readonly string[]).includes(key)) fieldError(key, `is not a config field (fields: ${FIELDS.join(', ')})`);
  }
  if (c.schemasDir !== undefined && (typeof c.schemasDir !== 'string' || c.schemasDir === '')) fieldError('schemasDir', 'must be a directory path');
  if (c.upcasters !== undefined && !isUpcasterRegistry(c.upcasters)) {
    if (typeof c.upcasters !== 'object' || c.upcasters === null) fieldError('upcasters', 'must be { EventType: { fromVersion: (payload) => payload } }');
    for (const [type, steps] of Object.entries(c.upcasters as Record<string, unknown>)) {
      if (typeof steps !== 'object' || steps === null) fieldError(`upcasters.${type}`, 'must be { fromVersion: (payload) => payload }');
      for (const [v, fn] of Object.entries(steps as Record<string, unknown>)) {
        if (!/^[1-9][0-9]*$/.test(v)) fieldError(`upcasters.${type}.${v}`, 'must be keyed by the version it upcasts from (1, 2, ...)');
        if (typeof fn !== 'function') fieldError(`upcasters.${type}.${v}`, 'must be a function (payload) => payload');
      }
    }
  }
  if (c.projections !== undefined) {
    if (!Array.isArray(c.projections)) fieldError('projections', 'must be a list of defineProjection(...)');
    const names = new Set<string>();
    c.projections.forEach((p: unknown, i: number) => {
      const name = (p as { name?: unknown } | null)?.name;
      const ok =
        typeof p === 'object' &&
        p !== null &&
        typeof name === 'string' &&
        ((p as { kind?: unknown }).kind === 'projection' || typeof (p as { createTables?: unknown }).createTables === 'function');
      if (!ok) fieldError(`projections[${i}]`, 'must be defineProjection({ ... })');
      if (names.has(name as string) || name === 'audit_log') fieldError(`projections[${i}]`, `name ${JSON.stringify(name)} is used twice (audit_log is built in)`);
      names.add(name as string);
    });
  }
  if (c.reducers !== undefined) {
    if (!Array.isArray(c.reducers)) fieldError('reducers', 'must be a list of defineReducer(...)');
    const types = new Set<string>();
    c.reducers.forEach((r: unknown, i: number) => {
      const t = (r as { aggregateType?: unknown } | null)?.aggregateType;
      if (typeof r !== 'object' || r === null || typeof t !== 'string' || typeof (r as { apply?: unknown }).apply !== 'function')
        fieldError(`reducers[${i}]`, 'must be defineReducer({ ... })');
      if (types.has(t)) fieldError(`reducers[${i}]`, `aggregate type ${t} has two reducers`);
      types.add(t);
    });
  }
  if (c.topics !== undefined) {
    if (typeof c.topics !== 'object' || c.topics === null || Array.isArray(c.topics)) fieldError('topics', 'must be { aggregate_type: "topic" }');
    for (const [k, v] of Object.entries(c.topics as Record<string, unknown>)) {
      if (typeof v !== 'string' || !/^[A-Za-z0-9._-]{1,249}$/.test(v)) fieldError(`topics.${k}`, `must be a Kafka topic name, got ${JSON.stringify(v)}`);
    }
  }
  if (c.auditLog !== undefined && typeof c.auditLog !== 'boolean') fieldError('auditLog', 'must be true or false');
  if (c.commands !== undefined) {
    if (!Array.isArray(c.commands)) fieldError('commands', 'must be a list of commands');
    c.commands.forEach((cmd: unknown, i: number) => {
      const e = cmd as { name?: unknown; run?: unknown; subcommands?: unknown } | null;
      if (typeof e?.name !== 'string' || (typeof e.run !== 'function' && !Array.isArray(e.subcommands)))
        fieldError(`commands[${i}]`, 'must be a command { name, summary, needs, run }');
    });
  }
  return c as DomainDeclaration;
}

/** Check a team's domain at once (errors name the field) and mark it declared; `defineConfig` calls it. */
export function declareDomain<C extends DomainDeclaration>(config: C): C {
  validateDomainConfig(config);
  Object.defineProperty(config, CONFIG_MARK, { value: true, enumerable: false });
  return config;
}

export const CONFIG_MODULE_NAMES = ['outbox.config.js', 'outbox.config.mjs', 'outbox.config.cjs', 'outbox.config.ts'] as const;

/** The config module to load: `explicit` (--config / OUTBOX_CONFIG) or outbox.config.* in `cwd`; undefined when none. */
export function findConfigModule(cwd: string, explicit?: string): string | undefined {
  if (explicit !== undefined) {
    const file = path.resolve(cwd, explicit);
    if (!existsSync(file) || !statSync(file).isFile())
      throw new OutboxError('CONFIG_INVALID', `config module ${file} does not exist (--config / OUTBOX_CONFIG)`, { details: { file } });
    return file;
  }
  const found = CONFIG_MODULE_NAMES.map((n) => path.join(cwd, n)).filter((f) => existsSync(f));
  if (found.length > 1)
    throw new OutboxError('CONFIG_INVALID', `more than one config module in ${cwd}: ${found.map((f) => path.basename(f)).join(', ')} (keep one, or pick one with --config)`);
  return found[0];
}

// A real dynamic import (TypeScript's CommonJS output would turn `import()` into `require`).
const dynamicImport = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, unknown>>;

let tsRegistered = false;
/** Make `require` understand TypeScript through tsx's register API, if tsx is installed. */
function registerTypeScript(file: string, cause: unknown): void {
  if (tsRegistered) throw cause;
  let api: { register(): unknown };
  try {
    api = require('tsx/cjs/api') as { register(): unknown };
  } catch {
    throw new OutboxError('CONFIG_INVALID', `config module ${file} is TypeScript, but tsx is not installed: npm install --save-dev tsx, or use outbox.config.js`, {
      details: { file },
    });
  }
  api.register();
  tsRegistered = true;
}

const TS = new Set(['.ts', '.cts', '.mts']);

/** `require` a CommonJS or TypeScript module (a host that already compiles TypeScript — tsx, ts-jest — is used as is). */
function requireModule(file: string): unknown {
  try {
    return require(file) as unknown;
  } catch (err) {
    const code = (err as { code?: string }).code;
    const untranspiled = TS.has(path.extname(file)) && (err instanceof SyntaxError || code === 'ERR_UNKNOWN_FILE_EXTENSION');
    if (!untranspiled) throw err;
    registerTypeScript(file, err);
    delete require.cache[file];
    return require(file) as unknown;
  }
}

async function importModule(file: string): Promise<unknown> {
  if (path.extname(file) === '.mjs') return dynamicImport(pathToFileURL(file).href);
  try {
    return requireModule(file);
  } catch (err) {
    // An ES module behind a .js name (package "type": "module").
    if ((err as { code?: string }).code === 'ERR_REQUIRE_ESM') return dynamicImport(pathToFileURL(file).href);
    throw err;
  }
}

export interface LoadedConfigModule {
  file: string;
  config: DomainDeclaration;
}

/** Load and check a config module; any problem is CONFIG_INVALID naming the file (and the field). */
export async function loadConfigModule(file: string): Promise<LoadedConfigModule> {
  let mod: unknown;
  try {
    mod = await importModule(file);
  } catch (err) {
    if (isOutboxError(err) && err.details.file === file) throw err;
    const field = isOutboxError(err) && typeof err.details.field === 'string' ? { field: err.details.field } : {};
    throw new OutboxError('CONFIG_INVALID', `config module ${file}: ${errorMessage(err)}`, { cause: err, details: { file, ...field } });
  }
  return checked(file, mod);
}

function checked(file: string, mod: unknown): LoadedConfigModule {
  const exported = (mod as { default?: unknown } | null)?.default ?? mod;
  try {
    const config = validateDomainConfig(exported);
    const resolved: DomainDeclaration = { ...config, ...(config.schemasDir !== undefined ? { schemasDir: path.resolve(path.dirname(file), config.schemasDir) } : {}) };
    return { file, config: resolved };
  } catch (err) {
    const field = isOutboxError(err) && typeof err.details.field === 'string' ? err.details.field : undefined;
    throw new OutboxError('CONFIG_INVALID', `config module ${file}: ${errorMessage(err)}`, { cause: err, details: { file, ...(field ? { field } : {}) } });
  }
}

/** loadConfigModule for code that cannot wait (library defaults): CommonJS and TypeScript modules only. */
export function loadConfigModuleSync(file: string): LoadedConfigModule {
  if (path.extname(file) === '.mjs') {
    throw new OutboxError('CONFIG_INVALID', `config module ${file} is an ES module: the outbox CLI loads it; in code, pass the catalog, projections and reducers explicitly`, {
      details: { file },
    });
  }
  let mod: unknown;
  try {
    mod = requireModule(file);
  } catch (err) {
    if (isOutboxError(err) && err.details.file === file) throw err;
    throw new OutboxError('CONFIG_INVALID', `config module ${file}: ${errorMessage(err)}`, { cause: err, details: { file } });
  }
  return checked(file, mod);
}

export interface EnvironmentDomain {
  /** The config module found, if any. */
  file?: string;
  config: DomainDeclaration;
  /** OUTBOX_SCHEMAS_DIR, else the config module's schemasDir (absolute). */
  schemasDir?: string;
}

const environmentDomains = new Map<string, EnvironmentDomain>();

/**
 * The domain the process is configured with, for library defaults (a relay, projector or catalog created
 * without an explicit catalog, projections or reducers): OUTBOX_SCHEMAS_DIR, and the config module named
 * by OUTBOX_CONFIG or found as outbox.config.* in the working directory. Read once per directory and settings.
 */
export function environmentDomain(env: Record<string, string | undefined> = process.env, cwd: string = process.cwd()): EnvironmentDomain {
  const { domainSettings } = require('./config') as typeof import('./config');
  const settings = domainSettings(env);
  const key = [cwd, settings.configModule ?? '', settings.schemasDir ?? ''].join('\u0000');
  const cached = environmentDomains.get(key);
  if (cached) return cached;
  const file = findConfigModule(cwd, settings.configModule);
  const loaded = file ? loadConfigModuleSync(file) : undefined;
  const schemasDir = settings.schemasDir !== undefined ? path.resolve(cwd, settings.schemasDir) : loaded?.config.schemasDir;
  const domain: EnvironmentDomain = { ...(file ? { file } : {}), config: loaded?.config ?? {}, ...(schemasDir !== undefined ? { schemasDir } : {}) };
  environmentDomains.set(key, domain);
  return domain;
}
