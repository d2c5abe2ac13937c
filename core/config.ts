import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { OutboxError } from './errors';
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
}

export interface RegistrySettings {
  url: string;
  auth?: { username: string; password: string };
}

export interface RelaySettings {
  batchSize: number;
  pollIntervalMs: number;
  /** Topic of an aggregate type: explicit map first, then `<aggregate_type><topicSuffix>`. */
  topicMap: Record<string, string>;
  topicSuffix: string;
  topicPartitions: number;
  deliveredRetentionMs: number;
  instanceId: string;
  /** Largest record the broker accepts (its message.max.bytes); bigger events are parked. */
  maxMessageBytes: number;
}

export interface ProjectorSettings {
  snapshotEvery: number;
  batchSize: number;
}

export interface OutboxConfig {
  databaseUrl: string;
  /** PostgreSQL schema (namespace) that holds the outbox tables. */
  schema: string;
  kafka: KafkaSettings;
  registry: RegistrySettings;
  relay: RelaySettings;
  projector: ProjectorSettings;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** Port of the admin HTTP server (/metrics, /healthz, /readyz); 0 disables it. */
  adminPort: number;
  /** Interface the admin HTTP server binds to (OUTBOX_ADMIN_HOST, default 127.0.0.1; 0.0.0.0 in containers). */
  adminHost?: string;
}

export type Env = Record<string, string | undefined>;

/** Which parts a command needs; variables of parts not needed are not required (but still validated if set). */
export interface ConfigNeeds {
  database?: boolean;
  kafka?: boolean;
  registry?: boolean;
}

function fail(variable: string, problem: string): never {
  throw new OutboxError('CONFIG_INVALID', `${variable} ${problem}`, { details: { variable } });
}

/** Parse `KEY=value` lines (shell-sourceable; comments and blank lines ignored). */
export function parseEnvFile(text: string): Env {
  const out: Env = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).replace(/^export\s+/, '').trim();
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

function str(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function int(env: Env, name: string, def: number, min: number, max: number): number {
  const v = str(env, name);
  if (v === undefined) return def;
  if (!/^-?\d+$/.test(v)) fail(name, `must be a whole number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) fail(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function bool(env: Env, name: string, def: boolean): boolean {
  const v = str(env, name);
  if (v === undefined) return def;
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  return fail(name, `must be true or false, got "${v}"`);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
export function parseDuration(name: string, v: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) fail(name, `must be a duration such as 500ms, 30s, 15m, 12h or 7d, got "${v}"`);
  return Number(m[1]) * (DURATION_UNITS[m[2] ?? 'ms'] ?? 1);
}

function duration(env: Env, name: string, def: number): number {
  const v = str(env, name);
  return v === undefined ? def : parseDuration(name, v);
}

function databaseUrl(env: Env, required: boolean): string {
  const v = str(env, 'DATABASE_URL');
  if (v === undefined) {
    if (required) fail('DATABASE_URL', 'is not set (expected postgres://user:password@host:5432/database)');
    return '';
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return fail('DATABASE_URL', 'is not a valid URL (expected postgres://user:password@host:5432/database)');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') fail('DATABASE_URL', `must start with postgres:// (got ${u.protocol}//)`);
  if (u.hostname === '') fail('DATABASE_URL', 'has no host');
  if (u.password) registerSecret(decodeURIComponent(u.password));
  const sslmode = u.searchParams.get('sslmode');
  if (sslmode !== null && !['disable', 'prefer', 'require', 'verify-ca', 'verify-full', 'no-verify'].includes(sslmode)) {
    fail('DATABASE_URL', `has an unknown sslmode "${sslmode}"`);
  }
  return v;
}

function brokers(env: Env, required: boolean): string[] {
  const v = str(env, 'KAFKA_BROKERS');
  if (v === undefined) {
    if (required) fail('KAFKA_BROKERS', 'is not set (expected host:port[,host:port...])');
    return [];
  }
  const list = v.split(',').map((b) => b.trim()).filter((b) => b !== '');
  for (const b of list) {
    const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(b);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) fail('KAFKA_BROKERS', `has an invalid entry "${b}" (expected host:port)`);
  }
  if (list.length === 0) fail('KAFKA_BROKERS', 'is empty');
  return list;
}

function registryUrl(env: Env, required: boolean): string {
  const v = str(env, 'SCHEMA_REGISTRY_URL');
  if (v === undefined) {
    if (required) fail('SCHEMA_REGISTRY_URL', 'is not set (expected http(s)://host:port[/apis/ccompat/v7])');
    return '';
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return fail('SCHEMA_REGISTRY_URL', 'is not a valid URL (expected http(s)://host:port[/apis/ccompat/v7])');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') fail('SCHEMA_REGISTRY_URL', `must be http:// or https:// (got ${u.protocol}//)`);
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

function topicMap(env: Env): Record<string, string> {
  const v = str(env, 'OUTBOX_TOPIC_MAP');
  const out: Record<string, string> = {};
  if (v === undefined) return out;
  for (const pair of v.split(',')) {
    const m = /^\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z0-9._-]{1,249})\s*$/.exec(pair);
    if (!m || m[1] === undefined || m[2] === undefined) fail('OUTBOX_TOPIC_MAP', `has an invalid entry "${pair.trim()}" (expected aggregate_type=topic[,...])`);
    out[m[1]] = m[2];
  }
  return out;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loadConfig(env: Env = readEnvironment(), needs: ConfigNeeds = {}): OutboxConfig {
  const schema = str(env, 'OUTBOX_SCHEMA') ?? 'public';
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) fail('OUTBOX_SCHEMA', `must be a lower-case SQL identifier, got "${schema}"`);

  const mechanism = str(env, 'KAFKA_SASL_MECHANISM')?.toLowerCase();
  let sasl: KafkaSettings['sasl'];
  if (mechanism !== undefined) {
    if (mechanism !== 'plain' && mechanism !== 'scram-sha-256' && mechanism !== 'scram-sha-512') {
      fail('KAFKA_SASL_MECHANISM', `must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got "${mechanism}"`);
    }
    const username = str(env, 'KAFKA_SASL_USERNAME') ?? fail('KAFKA_SASL_USERNAME', 'is required when KAFKA_SASL_MECHANISM is set');
    const password = str(env, 'KAFKA_SASL_PASSWORD') ?? fail('KAFKA_SASL_PASSWORD', 'is required when KAFKA_SASL_MECHANISM is set');
    registerSecret(password);
    sasl = { mechanism, username, password };
  }
  const caFile = str(env, 'KAFKA_TLS_CA_FILE');
  const tls = bool(env, 'KAFKA_TLS', caFile !== undefined);
  let ca: string | undefined;
  if (caFile !== undefined) {
    if (!existsSync(caFile)) fail('KAFKA_TLS_CA_FILE', `names ${caFile}, which does not exist`);
    ca = readFileSync(caFile, 'utf8');
  }

  const regUser = str(env, 'SCHEMA_REGISTRY_USERNAME');
  const regPass = str(env, 'SCHEMA_REGISTRY_PASSWORD');
  if ((regUser === undefined) !== (regPass === undefined)) {
    fail(regUser === undefined ? 'SCHEMA_REGISTRY_USERNAME' : 'SCHEMA_REGISTRY_PASSWORD', 'must be set together with the other registry credential');
  }
  registerSecret(regPass);

  const registry = splitRegistryCredentials(registryUrl(env, needs.registry ?? false));
  const registryAuth = regUser !== undefined && regPass !== undefined ? { username: regUser, password: regPass } : registry.auth;

  const adminHost = str(env, 'OUTBOX_ADMIN_HOST') ?? '127.0.0.1';
  if (!/^([A-Za-z0-9.-]+|[0-9a-fA-F:]+)$/.test(adminHost)) fail('OUTBOX_ADMIN_HOST', `must be a host name or IP address, got "${adminHost}"`);

  const level = (str(env, 'LOG_LEVEL') ?? 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) fail('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);

  return {
    databaseUrl: databaseUrl(env, needs.database ?? false),
    schema,
    kafka: {
      brokers: brokers(env, needs.kafka ?? false),
      clientId: str(env, 'KAFKA_CLIENT_ID') ?? 'kafka-outbox',
      ssl: tls ? { ...(ca !== undefined ? { ca } : {}), rejectUnauthorized: true } : false,
      ...(sasl ? { sasl } : {}),
      connectionTimeoutMs: int(env, 'KAFKA_CONNECTION_TIMEOUT_MS', 3000, 100, 600_000),
      requestTimeoutMs: int(env, 'KAFKA_REQUEST_TIMEOUT_MS', 30_000, 100, 600_000),
    },
    registry: {
      url: registry.url,
      ...(registryAuth ? { auth: registryAuth } : {}),
    },
    relay: {
      batchSize: int(env, 'OUTBOX_RELAY_BATCH_SIZE', 1000, 1, 100_000),
      pollIntervalMs: duration(env, 'OUTBOX_RELAY_POLL_INTERVAL', 1000),
      topicMap: topicMap(env),
      topicSuffix: str(env, 'OUTBOX_TOPIC_SUFFIX') ?? '.events',
      topicPartitions: int(env, 'OUTBOX_TOPIC_PARTITIONS', 6, 1, 10_000),
      deliveredRetentionMs: duration(env, 'OUTBOX_DELIVERED_RETENTION', 7 * 86_400_000),
      instanceId: str(env, 'OUTBOX_INSTANCE_ID') ?? `${process.env.HOSTNAME ?? 'relay'}-${process.pid}`,
      maxMessageBytes: int(env, 'OUTBOX_KAFKA_MAX_MESSAGE_BYTES', 1_000_000, 1024, 100_000_000),
    },
    projector: {
      snapshotEvery: int(env, 'OUTBOX_SNAPSHOT_EVERY', 100, 1, 1_000_000),
      batchSize: int(env, 'OUTBOX_PROJECTOR_BATCH_SIZE', 500, 1, 100_000),
    },
    logLevel: level as OutboxConfig['logLevel'],
    adminPort: int(env, 'OUTBOX_ADMIN_PORT', 0, 0, 65535),
    adminHost,
  };
}
