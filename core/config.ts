import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { OutboxError } from './errors';
import { option } from './options';
import { registerSecret } from './redact';

/**
 * All configuration of kafka-outbox, read from the environment once at start-up and validated here,
 * in one place. A bad value fails fast with an OutboxError('CONFIG_INVALID') whose message names the
 * variable. Components take the parsed `OutboxConfig` (or a part of it), never `process.env`.
 *
 * Variables that are not set in the environment are taken from the file named by OUTBOX_ENV_FILE
 * (default `.stack/env` in the working directory, written by `npm run stack:up`), if it exists.
 */
export interface KafkaSettings {
  brokers: string[];
  clientId: string;
  ssl: false | { ca?: string; rejectUnauthorized: true };
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  /**
   * SASL over a connection without TLS (OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL): refused by loadConfig unless
   * set, because PLAIN sends the password in clear and SCRAM exposes the exchange and every record.
   */
  allowPlaintextSasl?: boolean;
  /** Replication factor of the topics kafka-outbox creates (OUTBOX_TOPIC_REPLICATION_FACTOR); unset: min(3, brokers). */
  topicReplicationFactor?: number;
  /** Their min.insync.replicas (OUTBOX_TOPIC_MIN_INSYNC_REPLICAS); unset: replication factor - 1, at least 1. */
  topicMinInsyncReplicas?: number;
}

export interface RegistrySettings {
  url: string;
  auth?: { username: string; password: string };
}

export interface RelaySettings {
  batchSize: number;
  pollIntervalMs: number;
  /** Topic of an aggregate type: explicit map first, then the template, then `<aggregate_type><topicSuffix>`. */
  topicMap: Record<string, string>;
  topicSuffix: string;
  /**
   * Topic name template (OUTBOX_TOPIC_TEMPLATE), `{aggregate_type}` replaced by the aggregate type, for
   * the types OUTBOX_TOPIC_MAP does not name. Unset: `{aggregate_type}<OUTBOX_TOPIC_SUFFIX>`, which by
   * default is `{aggregate_type}.events`. Set one of OUTBOX_TOPIC_TEMPLATE and OUTBOX_TOPIC_SUFFIX.
   */
  topicTemplate?: string;
  /**
   * CloudEvents binary-mode headers on every record (OUTBOX_CLOUDEVENTS=true; off by default): ce_id,
   * ce_source, ce_type, ce_specversion, ce_time, ce_subject and content-type, from the event's own
   * metadata. `source` is OUTBOX_CLOUDEVENTS_SOURCE (default `/kafka-outbox/<OUTBOX_SCHEMA>`).
   */
  cloudEvents?: { source: string };
  topicPartitions: number;
  deliveredRetentionMs: number;
  instanceId: string;
  /** Largest record the broker accepts (its message.max.bytes); bigger events are parked. */
  maxMessageBytes: number;
  /**
   * Byte budget of one claim (OUTBOX_RELAY_BATCH_BYTES, default 16 MiB): a claim stops at
   * OUTBOX_RELAY_BATCH_SIZE events or when the stored payloads reach this many bytes, whichever comes
   * first (always at least one event), so a run of large events does not load a huge batch in memory.
   */
  batchBytes: number;
  /**
   * Publish each batch in a Kafka transaction (OUTBOX_RELAY_TRANSACTIONAL, default true), with one
   * transactional.id per outbox: a new leader's producer fences the previous leader's, so a relay that
   * lost its lock without knowing cannot publish any more. Consumers must read with
   * isolation.level=read_committed (kafkajs's default; not the Java client's), and must not assume
   * dense offsets: every commit writes a marker that takes an offset (the projector measures lag and
   * rebuild progress from its consumer's position). Off: the idempotent producer alone, and the lock
   * check before each claim.
   */
  transactional: boolean;
  /**
   * transactional.id of the relays of this outbox (OUTBOX_RELAY_TRANSACTIONAL_ID); default
   * `kafka-outbox-relay.<database>.<schema>`. Every relay of one outbox must use the same one, and two
   * outboxes sharing a Kafka cluster must not (set it when their database and schema names coincide).
   */
  transactionalId?: string;
  /**
   * Active-active (OUTBOX_RELAY_SHARDED, default false): each running instance publishes its fair share
   * of the delivery queue's shards (relay/own-shards.ts). Off: one leader, the others stand by.
   */
  sharded?: boolean;
  /** With `sharded`, how often an instance rebalances its shards (OUTBOX_RELAY_REBALANCE_INTERVAL, default 1 s). */
  rebalanceIntervalMs?: number;
  /** Shards created by `outbox migrate` (OUTBOX_RELAY_SHARDS, default 32; fixed once migrated). */
  shards?: number;
}

export interface ProjectorSettings {
  /** PostgreSQL schema of the projector's tables and of the read-model views (OUTBOX_PROJECTOR_SCHEMA). */
  schema: string;
  snapshotEvery: number;
  batchSize: number;
}

/** A named token that allows actions in `outbox console` (OUTBOX_CONSOLE_TOKEN). */
export interface ConsoleToken {
  /** Who holds it: logged with every action taken with it. */
  name: string;
  token: string;
}

export interface ConsoleSettings {
  /** Port of `outbox console` (OUTBOX_CONSOLE_PORT, default 9470; 0 = any free port). */
  port: number;
  /** Interface it binds to (OUTBOX_CONSOLE_HOST, default 127.0.0.1). */
  host: string;
  /** Tokens that allow actions (retry, skip, rebuild); none: the console is read-only. Secrets. */
  tokens: ConsoleToken[];
  /** Where `outbox audit prove` finds checkpoints (OUTBOX_CONSOLE_CHECKPOINTS); unset: no proof links. */
  checkpoints?: string;
}

export interface OutboxConfig {
  databaseUrl: string;
  /** PostgreSQL schema (namespace) that holds the outbox tables (OUTBOX_SCHEMA, default `outbox`). */
  schema: string;
  kafka: KafkaSettings;
  registry: RegistrySettings;
  relay: RelaySettings;
  projector: ProjectorSettings;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Checkpoint signing key (OUTBOX_AUDIT_PRIVATE_KEY_FILE / OUTBOX_AUDIT_PRIVATE_KEY, a secret); never stored in PostgreSQL. */
  audit?: {
    privateKeyFile?: string;
    privateKey?: string;
    /** OUTBOX_AUDIT_CHECKPOINT_EVERY: the relay also takes a signed checkpoint this often; unset or 0: off. */
    checkpointEveryMs?: number;
    /** OUTBOX_AUDIT_CHECKPOINT_FILE: where the relay also appends its checkpoints. */
    checkpointFile?: string;
  };
  /**
   * Port of the admin HTTP server (/metrics, /healthz, /readyz) from OUTBOX_ADMIN_PORT; 0 disables it.
   * Unset: the component's default (relay 9464, projector 9465; a free port when that one is taken).
   */
  adminPort?: number;
  /** Interface the admin HTTP server binds to (OUTBOX_ADMIN_HOST, default 127.0.0.1; 0.0.0.0 in containers). */
  adminHost?: string;
  /**
   * /healthz answers 503 when the main loop of the relay or projector has not gone round for this long
   * (OUTBOX_LIVENESS_TIMEOUT, default 2 minutes; it must exceed the longest legitimate pause: the retry
   * backoff cap of 10 s, a Kafka request timeout, a consumer group rebalance).
   */
  livenessTimeoutMs?: number;
  /** `outbox console` (OUTBOX_CONSOLE_*); always set by loadConfig. */
  console?: ConsoleSettings;
  /** Directory of the event schemas `<aggregate_type>/<EventType>.v<N>.avsc` (OUTBOX_SCHEMAS_DIR; the CLI's --schemas wins). */
  schemasDir?: string;
  /** The config module declaring the domain (OUTBOX_CONFIG; the CLI's --config wins; default outbox.config.* in the working directory). */
  configModule?: string;
}

export type Env = Record<string, string | undefined>;

/** Which parts a command needs; variables of parts not needed are not required (but still validated if set). */
export interface ConfigNeeds {
  database?: boolean;
  kafka?: boolean;
  registry?: boolean;
}

/** One invalid setting. */
export interface ConfigProblem {
  variable: string;
  /** What is wrong with it (`must be a whole number, got "x"`). */
  problem: string;
  /** The line reported: the variable and its problem. */
  message: string;
}

function fail(variable: string, problem: string): never {
  throw new OutboxError('CONFIG_INVALID', `${variable} ${problem}`, { details: { variable } });
}

/** Thrown by a reader to abandon one setting; collected by loadConfig, never escapes it. */
class SettingInvalid extends Error {}

/**
 * Reads declared settings (core/options.ts) from an environment and collects every problem instead of
 * stopping at the first, so that a misconfigured deployment learns everything that is wrong in one go.
 */
class Reader {
  readonly problems: ConfigProblem[] = [];
  constructor(private readonly env: Env) {}

  /** Record a problem and abandon the setting being read (caught by `read`). */
  fail(variable: string, problem: string): never {
    this.problems.push({ variable, problem, message: `${variable} ${problem}` });
    throw new SettingInvalid(`${variable} ${problem}`);
  }

  /** Run one setting's reader; on a problem, use `fallback` so the remaining settings are still checked. */
  read<T>(fallback: T, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof SettingInvalid) return fallback;
      throw err;
    }
  }

  str(name: string): string | undefined {
    option(name);
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  /** A string setting, its declared default when unset. */
  text(name: string): string {
    const d = option(name).default;
    return this.str(name) ?? (typeof d === 'string' ? d : '');
  }

  int(name: string): number {
    const o = option(name);
    const def = typeof o.default === 'number' ? o.default : 0;
    return this.read(def, () => {
      const v = this.str(name);
      if (v === undefined) return def;
      if (!/^-?\d+$/.test(v)) this.fail(name, `must be a whole number, got "${v}"`);
      const n = Number(v);
      const min = o.min ?? Number.MIN_SAFE_INTEGER;
      const max = o.max ?? Number.MAX_SAFE_INTEGER;
      if (n < min || n > max) this.fail(name, `must be between ${min} and ${max}, got ${n}`);
      return n;
    });
  }

  bool(name: string, def: boolean = option(name).default === true): boolean {
    return this.read(def, () => {
      const v = this.str(name);
      if (v === undefined) return def;
      if (/^(1|true|yes|on)$/i.test(v)) return true;
      if (/^(0|false|no|off)$/i.test(v)) return false;
      return this.fail(name, `must be true or false, got "${v}"`);
    });
  }

  duration(name: string): number {
    const o = option(name);
    const def = typeof o.default === 'number' ? o.default : 0;
    return this.read(def, () => {
      const v = this.str(name);
      if (v === undefined) return def;
      const ms = durationMs(v);
      return ms ?? this.fail(name, `must be a duration such as 500ms, 30s, 15m, 12h or 7d, got "${v}"`);
    });
  }
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

function durationMs(v: string): number | undefined {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v.trim());
  return m ? Number(m[1]) * (DURATION_UNITS[m[2] ?? 'ms'] ?? 1) : undefined;
}

/** A duration such as 500ms, 30s, 15m, 12h or 7d (bare numbers are milliseconds), for flags and settings. */
export function parseDuration(name: string, v: string): number {
  return durationMs(v) ?? fail(name, `must be a duration such as 500ms, 30s, 15m, 12h or 7d, got "${v}"`);
}

/** Where the domain comes from: OUTBOX_SCHEMAS_DIR and OUTBOX_CONFIG (both optional). */
export function domainSettings(env: Env): { schemasDir?: string; configModule?: string } {
  const r = new Reader(env);
  const schemasDir = r.str('OUTBOX_SCHEMAS_DIR');
  const configModule = r.str('OUTBOX_CONFIG');
  return { ...(schemasDir !== undefined ? { schemasDir } : {}), ...(configModule !== undefined ? { configModule } : {}) };
}

/** Parse `KEY=value` lines (shell-sourceable; comments and blank lines ignored). */
export function parseEnvFile(text: string): Env {
  const out: Env = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line
      .slice(0, eq)
      .replace(/^export\s+/, '')
      .trim();
    let value = line.slice(eq + 1).trim();
    if ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'"))) value = value.slice(1, -1);
    out[key] = value;
  }
  return out;
}

/** process.env merged over the stack's env file (environment wins). */
export function readEnvironment(env: Env = process.env, cwd: string = process.cwd()): Env {
  const file = env.OUTBOX_ENV_FILE ?? path.join(cwd, '.stack', 'env');
  if (!existsSync(file)) {
    if (env.OUTBOX_ENV_FILE !== undefined) fail('OUTBOX_ENV_FILE', `names ${file}, which does not exist`);
    return { ...env };
  }
  return { ...parseEnvFile(readFileSync(file, 'utf8')), ...env };
}

function databaseUrl(r: Reader, required: boolean): string {
  const v = r.str('DATABASE_URL');
  if (v === undefined) {
    if (required) r.fail('DATABASE_URL', 'is not set (expected postgres://user:password@host:5432/database)');
    return '';
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return r.fail('DATABASE_URL', 'is not a valid URL (expected postgres://user:password@host:5432/database)');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') r.fail('DATABASE_URL', `must start with postgres:// (got ${u.protocol}//)`);
  if (u.hostname === '') r.fail('DATABASE_URL', 'has no host');
  if (u.password) registerSecret(decodeURIComponent(u.password));
  const sslmode = u.searchParams.get('sslmode');
  if (sslmode !== null && !['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'].includes(sslmode)) {
    r.fail('DATABASE_URL', `has an unknown sslmode "${sslmode}"`);
  }
  return v;
}

function brokers(r: Reader, required: boolean): string[] {
  const v = r.str('KAFKA_BROKERS');
  if (v === undefined) {
    if (required) r.fail('KAFKA_BROKERS', 'is not set (expected host:port[,host:port...])');
    return [];
  }
  const list = v
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b !== '');
  for (const b of list) {
    const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(b);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) r.fail('KAFKA_BROKERS', `has an invalid entry "${b}" (expected host:port)`);
  }
  if (list.length === 0) r.fail('KAFKA_BROKERS', 'is empty');
  return list;
}

function registryUrl(r: Reader, required: boolean): string {
  const v = r.str('SCHEMA_REGISTRY_URL');
  if (v === undefined) {
    if (required) r.fail('SCHEMA_REGISTRY_URL', 'is not set (expected http(s)://host:port[/apis/ccompat/v7])');
    return '';
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return r.fail('SCHEMA_REGISTRY_URL', 'is not a valid URL (expected http(s)://host:port[/apis/ccompat/v7])');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') r.fail('SCHEMA_REGISTRY_URL', `must be http:// or https:// (got ${u.protocol}//)`);
  if (u.password) registerSecret(decodeURIComponent(u.password));
  return v.replace(/\/+$/, '');
}

/**
 * Credentials written into SCHEMA_REGISTRY_URL (https://user:password@host/...) become basic auth and are
 * removed from the URL: fetch refuses URLs with credentials (and would put them in its error message).
 */
function splitRegistryCredentials(url: string): { url: string; auth?: { username: string; password: string } } {
  if (url === '') return { url };
  const u = new URL(url);
  if (u.username === '' && u.password === '') return { url };
  const auth = { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
  u.username = '';
  u.password = '';
  return { url: u.toString().replace(/\/+$/, ''), auth };
}

function topicMap(r: Reader): Record<string, string> {
  const v = r.str('OUTBOX_TOPIC_MAP');
  const out: Record<string, string> = {};
  if (v === undefined) return out;
  for (const pair of v.split(',')) {
    const m = /^\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z0-9._-]{1,249})\s*$/.exec(pair);
    if (!m || m[1] === undefined || m[2] === undefined) r.fail('OUTBOX_TOPIC_MAP', `has an invalid entry "${pair.trim()}" (expected aggregate_type=topic[,...])`);
    out[m[1]] = m[2];
  }
  return out;
}

/**
 * OUTBOX_CONSOLE_TOKEN: `name:token[,name:token...]`, or one bare token (named `operator`). Each token
 * at least 16 characters without spaces or commas; names [A-Za-z0-9_.@-]. Every token is a secret.
 */
function consoleTokens(r: Reader): ConsoleToken[] {
  const v = r.str('OUTBOX_CONSOLE_TOKEN');
  if (v === undefined) return [];
  const out: ConsoleToken[] = [];
  for (const entry of v.split(',').map((e) => e.trim())) {
    const colon = entry.indexOf(':');
    const name = colon < 0 ? 'operator' : entry.slice(0, colon);
    const token = colon < 0 ? entry : entry.slice(colon + 1);
    registerSecret(token);
    if (!/^[A-Za-z0-9_.@-]{1,64}$/.test(name))
      r.fail('OUTBOX_CONSOLE_TOKEN', `has an entry with an invalid name (expected name:token[,name:token...], names of letters, digits, _ . @ -)`);
    if (token.length < 16 || /\s/.test(token)) r.fail('OUTBOX_CONSOLE_TOKEN', `has a token for "${name}" that is shorter than 16 characters or contains spaces`);
    if (out.some((t) => t.name === name)) r.fail('OUTBOX_CONSOLE_TOKEN', `names "${name}" twice`);
    out.push({ name, token });
  }
  return out;
}

/** OUTBOX_TOPIC_TEMPLATE: topic-name characters and the placeholder {aggregate_type}. */
function topicTemplate(r: Reader): { topicTemplate?: string } {
  const v = r.str('OUTBOX_TOPIC_TEMPLATE');
  if (v === undefined) return {};
  if (r.str('OUTBOX_TOPIC_SUFFIX') !== undefined)
    r.fail('OUTBOX_TOPIC_TEMPLATE', 'and OUTBOX_TOPIC_SUFFIX are both set: set one (the template {aggregate_type}<suffix> is what the suffix means)');
  if (!/^([A-Za-z0-9._-]|\{aggregate_type\})+$/.test(v) || v.replace(/\{aggregate_type\}/g, '').length > 200) {
    r.fail('OUTBOX_TOPIC_TEMPLATE', `must be topic-name characters (letters, digits, . _ -) and {aggregate_type}, got "${v}"`);
  }
  return { topicTemplate: v };
}

/** OUTBOX_CLOUDEVENTS (bool) and OUTBOX_CLOUDEVENTS_SOURCE (a URI reference). */
function cloudEvents(r: Reader, schema: string): { cloudEvents?: { source: string } } {
  const source = r.str('OUTBOX_CLOUDEVENTS_SOURCE');
  if (!r.bool('OUTBOX_CLOUDEVENTS')) {
    if (source !== undefined) r.fail('OUTBOX_CLOUDEVENTS_SOURCE', 'is set but OUTBOX_CLOUDEVENTS is not true');
    return {};
  }
  if (source !== undefined && !/^[\x21-\x7e]{1,500}$/.test(source)) r.fail('OUTBOX_CLOUDEVENTS_SOURCE', `must be a URI reference without spaces, got "${source}"`);
  return { cloudEvents: { source: source ?? `/kafka-outbox/${schema}` } };
}

/** OUTBOX_RELAY_TRANSACTIONAL_ID: a Kafka transactional.id (printable, no spaces), when set. */
function transactionalId(r: Reader): { transactionalId?: string } {
  const v = r.str('OUTBOX_RELAY_TRANSACTIONAL_ID');
  if (v === undefined) return {};
  if (!/^[\x21-\x7e]{1,200}$/.test(v)) r.fail('OUTBOX_RELAY_TRANSACTIONAL_ID', `must be 1 to 200 printable characters without spaces, got "${v}"`);
  return { transactionalId: v };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Default OUTBOX_SCHEMA. */
export const DEFAULT_SCHEMA = 'outbox';

/** Default OUTBOX_PROJECTOR_SCHEMA for an outbox schema: `<schema>_read`. */
export function defaultProjectorSchema(schema: string): string {
  return `${schema}_read`;
}

const SQL_IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

export function loadConfig(env: Env = readEnvironment(), needs: ConfigNeeds = {}): OutboxConfig {
  const r: Reader = new Reader(env);
  const schema = r.read(DEFAULT_SCHEMA, () => {
    const v = r.text('OUTBOX_SCHEMA');
    return SQL_IDENTIFIER.test(v) ? v : r.fail('OUTBOX_SCHEMA', `must be a lower-case SQL identifier, got "${v}"`);
  });
  const projectorSchema = r.read(defaultProjectorSchema(schema), () => {
    const explicit = r.str('OUTBOX_PROJECTOR_SCHEMA');
    const v = explicit ?? defaultProjectorSchema(schema);
    if (!SQL_IDENTIFIER.test(v)) {
      r.fail(
        'OUTBOX_PROJECTOR_SCHEMA',
        `must be a lower-case SQL identifier of at most 63 characters, got "${v}"${explicit === undefined ? ' (the default <OUTBOX_SCHEMA>_read; set it explicitly)' : ''}`,
      );
    }
    if (v === schema) r.fail('OUTBOX_PROJECTOR_SCHEMA', `must differ from OUTBOX_SCHEMA ("${schema}"): the projector owns its schema and must not own the history's`);
    return v;
  });

  const sasl = r.read<KafkaSettings['sasl']>(undefined, () => {
    const mechanism = r.str('KAFKA_SASL_MECHANISM')?.toLowerCase();
    if (mechanism === undefined) return undefined;
    if (mechanism !== 'plain' && mechanism !== 'scram-sha-256' && mechanism !== 'scram-sha-512') {
      return r.fail('KAFKA_SASL_MECHANISM', `must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got "${mechanism}"`);
    }
    const password = r.read(undefined, () => r.str('KAFKA_SASL_PASSWORD') ?? r.fail('KAFKA_SASL_PASSWORD', 'is required when KAFKA_SASL_MECHANISM is set'));
    registerSecret(password);
    const username = r.str('KAFKA_SASL_USERNAME') ?? r.fail('KAFKA_SASL_USERNAME', 'is required when KAFKA_SASL_MECHANISM is set');
    if (password === undefined) return undefined;
    return { mechanism, username, password };
  });
  const caFile = r.str('KAFKA_TLS_CA_FILE');
  const tls = r.bool('KAFKA_TLS', caFile !== undefined);
  const ca = r.read<string | undefined>(undefined, () => {
    if (caFile === undefined) return undefined;
    if (!existsSync(caFile)) r.fail('KAFKA_TLS_CA_FILE', `names ${caFile}, which does not exist`);
    return readFileSync(caFile, 'utf8');
  });

  const allowPlaintextSasl = r.bool('OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL');
  r.read(undefined, () => {
    if (sasl === undefined || tls || allowPlaintextSasl) return;
    r.fail(
      'KAFKA_TLS',
      `is off while KAFKA_SASL_MECHANISM=${sasl.mechanism.toUpperCase()} is set: the SASL credentials and every record would cross the network unencrypted${sasl.mechanism === 'plain' ? ' (PLAIN sends the password in clear)' : ''}. Set KAFKA_TLS=true (and KAFKA_TLS_CA_FILE for a private CA), or OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL=true to accept this on a trusted network`,
    );
  });
  const livenessTimeoutMs = r.read(120_000, () => {
    const v = r.duration('OUTBOX_LIVENESS_TIMEOUT');
    return v < 1000 ? r.fail('OUTBOX_LIVENESS_TIMEOUT', `must be at least 1s, got ${v}ms`) : v;
  });

  const regUser = r.str('SCHEMA_REGISTRY_USERNAME');
  const regPass = r.str('SCHEMA_REGISTRY_PASSWORD');
  registerSecret(regPass);
  r.read(undefined, () => {
    if ((regUser === undefined) !== (regPass === undefined)) {
      r.fail(regUser === undefined ? 'SCHEMA_REGISTRY_USERNAME' : 'SCHEMA_REGISTRY_PASSWORD', 'must be set together with the other registry credential');
    }
  });

  const registry = splitRegistryCredentials(r.read('', () => registryUrl(r, needs.registry ?? false)));
  const registryAuth = regUser !== undefined && regPass !== undefined ? { username: regUser, password: regPass } : registry.auth;

  const host = (name: string): string =>
    r.read(String(option(name).default), () => {
      const v = r.text(name);
      return /^([A-Za-z0-9.-]+|[0-9a-fA-F:]+)$/.test(v) ? v : r.fail(name, `must be a host name or IP address, got "${v}"`);
    });
  const adminHost = host('OUTBOX_ADMIN_HOST');
  const consoleHost = host('OUTBOX_CONSOLE_HOST');
  const checkpoints = r.str('OUTBOX_CONSOLE_CHECKPOINTS');
  const auditKeyFile = r.str('OUTBOX_AUDIT_PRIVATE_KEY_FILE');
  const auditKey = r.str('OUTBOX_AUDIT_PRIVATE_KEY');
  registerSecret(auditKey);
  const checkpointEveryMs = r.read(0, () => {
    const v = r.duration('OUTBOX_AUDIT_CHECKPOINT_EVERY');
    return v !== 0 && v < 1000 ? r.fail('OUTBOX_AUDIT_CHECKPOINT_EVERY', `must be 0 (off) or at least 1s, got ${v}ms`) : v;
  });
  const checkpointFile = r.str('OUTBOX_AUDIT_CHECKPOINT_FILE');

  const level = r.read('info', () => {
    const v = r.text('LOG_LEVEL').toLowerCase();
    return (LOG_LEVELS as readonly string[]).includes(v) ? v : r.fail('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${v}"`);
  });

  const config: OutboxConfig = {
    databaseUrl: r.read('', () => databaseUrl(r, needs.database ?? false)),
    schema,
    kafka: {
      brokers: r.read([], () => brokers(r, needs.kafka ?? false)),
      clientId: r.text('KAFKA_CLIENT_ID'),
      ssl: tls ? { ...(ca !== undefined ? { ca } : {}), rejectUnauthorized: true } : false,
      ...(sasl ? { sasl } : {}),
      connectionTimeoutMs: r.int('KAFKA_CONNECTION_TIMEOUT_MS'),
      requestTimeoutMs: r.int('KAFKA_REQUEST_TIMEOUT_MS'),
      ...(allowPlaintextSasl ? { allowPlaintextSasl } : {}),
      ...(r.str('OUTBOX_TOPIC_REPLICATION_FACTOR') !== undefined ? { topicReplicationFactor: r.int('OUTBOX_TOPIC_REPLICATION_FACTOR') } : {}),
      ...(r.str('OUTBOX_TOPIC_MIN_INSYNC_REPLICAS') !== undefined ? { topicMinInsyncReplicas: r.int('OUTBOX_TOPIC_MIN_INSYNC_REPLICAS') } : {}),
    },
    registry: {
      url: registry.url,
      ...(registryAuth ? { auth: registryAuth } : {}),
    },
    relay: {
      batchSize: r.int('OUTBOX_RELAY_BATCH_SIZE'),
      pollIntervalMs: r.duration('OUTBOX_RELAY_POLL_INTERVAL'),
      topicMap: r.read({}, () => topicMap(r)),
      topicSuffix: r.text('OUTBOX_TOPIC_SUFFIX'),
      ...r.read({}, () => topicTemplate(r)),
      ...r.read({}, () => cloudEvents(r, schema)),
      topicPartitions: r.int('OUTBOX_TOPIC_PARTITIONS'),
      deliveredRetentionMs: r.duration('OUTBOX_DELIVERED_RETENTION'),
      instanceId: r.str('OUTBOX_INSTANCE_ID') ?? `${process.env.HOSTNAME ?? 'relay'}-${process.pid}`,
      maxMessageBytes: r.int('OUTBOX_KAFKA_MAX_MESSAGE_BYTES'),
      batchBytes: r.int('OUTBOX_RELAY_BATCH_BYTES'),
      transactional: r.bool('OUTBOX_RELAY_TRANSACTIONAL'),
      ...r.read({}, () => transactionalId(r)),
      sharded: r.bool('OUTBOX_RELAY_SHARDED'),
      rebalanceIntervalMs: r.duration('OUTBOX_RELAY_REBALANCE_INTERVAL'),
      shards: r.int('OUTBOX_RELAY_SHARDS'),
    },
    projector: {
      schema: projectorSchema,
      snapshotEvery: r.int('OUTBOX_SNAPSHOT_EVERY'),
      batchSize: r.int('OUTBOX_PROJECTOR_BATCH_SIZE'),
    },
    logLevel: level as OutboxConfig['logLevel'],
    audit: {
      ...(auditKeyFile !== undefined ? { privateKeyFile: auditKeyFile } : {}),
      ...(auditKey !== undefined ? { privateKey: auditKey } : {}),
      ...(checkpointEveryMs > 0 ? { checkpointEveryMs } : {}),
      ...(checkpointFile !== undefined ? { checkpointFile } : {}),
    },
    ...(r.str('OUTBOX_ADMIN_PORT') !== undefined ? { adminPort: r.int('OUTBOX_ADMIN_PORT') } : {}),
    adminHost,
    livenessTimeoutMs,
    console: {
      port: r.int('OUTBOX_CONSOLE_PORT'),
      host: consoleHost,
      tokens: r.read([], () => consoleTokens(r)),
      ...(checkpoints !== undefined ? { checkpoints } : {}),
    },
    ...domainSettings(env),
  };
  throwProblems(r.problems);
  return config;
}

/** Every problem in one error, so that one start-up attempt shows everything to fix. */
function throwProblems(problems: ConfigProblem[]): void {
  const first = problems[0];
  if (!first) return;
  const lines = problems.map((p) => p.message);
  // One line (the CLI prints errors as one line), every problem in it.
  const message = lines.join('; ');
  throw new OutboxError('CONFIG_INVALID', message, { details: { variable: first.variable, problems } });
}
