import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, readEnvironment, type ConfigNeeds, type Env } from '../../core/config';
import { isOutboxError } from '../../core/errors';
import { childEnv, emptyEnvFile, runOutbox } from '../cli/run-outbox';

// loadConfig is the one place the environment is validated: every bad value is an
// OutboxError('CONFIG_INVALID') whose message starts with the variable's name.
const base: Env = { DATABASE_URL: 'postgres://app@db:5432/outbox', KAFKA_BROKERS: 'k1:9092', SCHEMA_REGISTRY_URL: 'http://reg:8081/apis/ccompat/v7' };
const all: ConfigNeeds = { database: true, kafka: true, registry: true };

function configError(env: Env, needs = all): { message: string; variable: unknown } {
  try {
    loadConfig(env, needs);
  } catch (err) {
    if (!isOutboxError(err, 'CONFIG_INVALID')) throw err;
    return { message: err.message, variable: err.details.variable };
  }
  throw new Error('loadConfig accepted the environment');
}

test.each<[string, string, Env, RegExp]>([
  ['missing DATABASE_URL', 'DATABASE_URL', { ...base, DATABASE_URL: undefined }, /^DATABASE_URL is not set/],
  ['malformed DATABASE_URL', 'DATABASE_URL', { ...base, DATABASE_URL: 'postgres://u:pw@host:port/db' }, /^DATABASE_URL is not a valid URL/],
  ['wrong scheme', 'DATABASE_URL', { ...base, DATABASE_URL: 'mysql://u@h/db' }, /^DATABASE_URL must start with postgres:\/\//],
  ['unknown sslmode', 'DATABASE_URL', { ...base, DATABASE_URL: 'postgres://u@h/db?sslmode=maybe' }, /^DATABASE_URL has an unknown sslmode "maybe"/],
  ['missing KAFKA_BROKERS', 'KAFKA_BROKERS', { ...base, KAFKA_BROKERS: ' ' }, /^KAFKA_BROKERS is not set/],
  ['bad broker entry', 'KAFKA_BROKERS', { ...base, KAFKA_BROKERS: 'k1:9092,x' }, /^KAFKA_BROKERS has an invalid entry "x" \(expected host:port\)/],
  ['broker port out of range', 'KAFKA_BROKERS', { ...base, KAFKA_BROKERS: 'k1:70000' }, /^KAFKA_BROKERS has an invalid entry "k1:70000"/],
  ['registry scheme', 'SCHEMA_REGISTRY_URL', { ...base, SCHEMA_REGISTRY_URL: 'ftp://reg' }, /^SCHEMA_REGISTRY_URL must be http:\/\/ or https:\/\//],
  ['registry credential alone', 'SCHEMA_REGISTRY_USERNAME', { ...base, SCHEMA_REGISTRY_PASSWORD: 'pw-only-1' }, /^SCHEMA_REGISTRY_USERNAME must be set together/],
  ['SASL mechanism', 'KAFKA_SASL_MECHANISM', { ...base, KAFKA_SASL_MECHANISM: 'GSSAPI' }, /^KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512/],
  ['SASL without password', 'KAFKA_SASL_PASSWORD', { ...base, KAFKA_SASL_MECHANISM: 'PLAIN', KAFKA_SASL_USERNAME: 'u' }, /^KAFKA_SASL_PASSWORD is required/],
  ['TLS flag', 'KAFKA_TLS', { ...base, KAFKA_TLS: 'sometimes' }, /^KAFKA_TLS must be true or false/],
  ['CA file missing', 'KAFKA_TLS_CA_FILE', { ...base, KAFKA_TLS_CA_FILE: '/nonexistent/ca.pem' }, /^KAFKA_TLS_CA_FILE names \/nonexistent\/ca.pem, which does not exist/],
  ['schema name', 'OUTBOX_SCHEMA', { ...base, OUTBOX_SCHEMA: 'Bad-Name' }, /^OUTBOX_SCHEMA must be a lower-case SQL identifier/],
  ['projector schema name', 'OUTBOX_PROJECTOR_SCHEMA', { ...base, OUTBOX_PROJECTOR_SCHEMA: 'read models' }, /^OUTBOX_PROJECTOR_SCHEMA must be a lower-case SQL identifier/],
  [
    'projector schema = outbox schema',
    'OUTBOX_PROJECTOR_SCHEMA',
    { ...base, OUTBOX_SCHEMA: 'billing', OUTBOX_PROJECTOR_SCHEMA: 'billing' },
    /^OUTBOX_PROJECTOR_SCHEMA must differ from OUTBOX_SCHEMA \("billing"\)/,
  ],
  [
    'default projector schema too long',
    'OUTBOX_PROJECTOR_SCHEMA',
    { ...base, OUTBOX_SCHEMA: 'a'.repeat(60) },
    /^OUTBOX_PROJECTOR_SCHEMA must be a lower-case SQL identifier of at most 63 characters, got "a{60}_read" \(the default/,
  ],
  ['log level', 'LOG_LEVEL', { ...base, LOG_LEVEL: 'chatty' }, /^LOG_LEVEL must be one of/],
  ['batch size', 'OUTBOX_RELAY_BATCH_SIZE', { ...base, OUTBOX_RELAY_BATCH_SIZE: '0' }, /^OUTBOX_RELAY_BATCH_SIZE must be between 1 and 100000, got 0/],
  ['duration', 'OUTBOX_DELIVERED_RETENTION', { ...base, OUTBOX_DELIVERED_RETENTION: '1 week' }, /^OUTBOX_DELIVERED_RETENTION must be a duration/],
  ['topic map', 'OUTBOX_TOPIC_MAP', { ...base, OUTBOX_TOPIC_MAP: 'user=users,order' }, /^OUTBOX_TOPIC_MAP has an invalid entry "order"/],
  ['admin port', 'OUTBOX_ADMIN_PORT', { ...base, OUTBOX_ADMIN_PORT: '99999' }, /^OUTBOX_ADMIN_PORT must be between 0 and 65535/],
  ['admin host', 'OUTBOX_ADMIN_HOST', { ...base, OUTBOX_ADMIN_HOST: 'not a host' }, /^OUTBOX_ADMIN_HOST must be a host name or IP address/],
])('%s names %s', (_label, variable, env, message) => {
  const e = configError(env);
  expect(e.variable).toBe(variable);
  expect(e.message).toMatch(message);
});

test('the outbox lives in schema outbox and the projector in <OUTBOX_SCHEMA>_read unless set', () => {
  expect(loadConfig(base, all)).toMatchObject({ schema: 'outbox', projector: { schema: 'outbox_read' } });
  expect(loadConfig({ ...base, OUTBOX_SCHEMA: 'billing' }, all)).toMatchObject({ schema: 'billing', projector: { schema: 'billing_read' } });
  expect(loadConfig({ ...base, OUTBOX_PROJECTOR_SCHEMA: 'read_models' }, all)).toMatchObject({ schema: 'outbox', projector: { schema: 'read_models' } });
});

test('a part that is not needed is not required, but is still validated when set', () => {
  expect(() => loadConfig({ DATABASE_URL: base.DATABASE_URL }, { database: true })).not.toThrow();
  expect(configError({ DATABASE_URL: base.DATABASE_URL, KAFKA_BROKERS: 'x' }, { database: true }).variable).toBe('KAFKA_BROKERS');
});

test('security settings are parsed: SASL, TLS with a CA file (verification on), registry basic auth', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-config-'));
  const ca = path.join(dir, 'ca.pem');
  writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  const c = loadConfig(
    {
      ...base,
      KAFKA_SASL_MECHANISM: 'SCRAM-SHA-512',
      KAFKA_SASL_USERNAME: 'relay',
      KAFKA_SASL_PASSWORD: 'sasl-pw-1',
      KAFKA_TLS_CA_FILE: ca,
      SCHEMA_REGISTRY_USERNAME: 'reg',
      SCHEMA_REGISTRY_PASSWORD: 'reg-pw-1',
    },
    all,
  );
  expect(c.kafka.sasl).toEqual({ mechanism: 'scram-sha-512', username: 'relay', password: 'sasl-pw-1' });
  expect(c.kafka.ssl).toEqual({ ca: expect.stringContaining('BEGIN CERTIFICATE'), rejectUnauthorized: true });
  expect(c.registry.auth).toEqual({ username: 'reg', password: 'reg-pw-1' });
  // TLS without a CA file verifies against the system CAs; it is never off unless asked.
  expect(loadConfig({ ...base, KAFKA_TLS: 'true' }, all).kafka.ssl).toEqual({ rejectUnauthorized: true });
  expect(loadConfig(base, all).kafka.ssl).toBe(false);
});

test('credentials in SCHEMA_REGISTRY_URL become basic auth and leave the URL', () => {
  const c = loadConfig({ ...base, SCHEMA_REGISTRY_URL: 'https://svc%40corp:p%2Fw-9@reg.example:8081/apis/ccompat/v7/' }, all);
  expect(c.registry).toEqual({ url: 'https://reg.example:8081/apis/ccompat/v7', auth: { username: 'svc@corp', password: 'p/w-9' } });
  // Explicit variables win over the URL.
  const d = loadConfig({ ...base, SCHEMA_REGISTRY_URL: 'https://a:b-pw-2@reg.example', SCHEMA_REGISTRY_USERNAME: 'x', SCHEMA_REGISTRY_PASSWORD: 'y-pw-3' }, all);
  expect(d.registry).toEqual({ url: 'https://reg.example', auth: { username: 'x', password: 'y-pw-3' } });
});

test('admin host defaults to loopback', () => {
  expect(loadConfig(base, all).adminHost).toBe('127.0.0.1');
  expect(loadConfig({ ...base, OUTBOX_ADMIN_HOST: '0.0.0.0', OUTBOX_ADMIN_PORT: '9464' }, all)).toMatchObject({ adminHost: '0.0.0.0', adminPort: 9464 });
});

test('readEnvironment: environment over the env file; a named env file must exist', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-env-'));
  const file = path.join(dir, 'env');
  writeFileSync(file, '# comment\nexport KAFKA_BROKERS=file:9092\nLOG_LEVEL="debug"\n');
  expect(readEnvironment({ OUTBOX_ENV_FILE: file, KAFKA_BROKERS: 'env:9092' })).toMatchObject({ KAFKA_BROKERS: 'env:9092', LOG_LEVEL: 'debug' });
  expect(() => readEnvironment({ OUTBOX_ENV_FILE: path.join(dir, 'missing') })).toThrow(/^OUTBOX_ENV_FILE names .*missing, which does not exist$/);
});

test('every invalid setting is reported at once, each named, in one CONFIG_INVALID error', () => {
  let caught: unknown;
  try {
    loadConfig(
      {
        KAFKA_BROKERS: 'k1:9092,x',
        SCHEMA_REGISTRY_URL: 'ftp://reg',
        LOG_LEVEL: 'chatty',
        OUTBOX_RELAY_BATCH_SIZE: 'many',
        OUTBOX_LIVENESS_TIMEOUT: 'soon',
        OUTBOX_SCHEMA: 'Bad-Name',
      },
      all,
    );
  } catch (err) {
    caught = err;
  }
  if (!isOutboxError(caught, 'CONFIG_INVALID')) throw new Error(`expected CONFIG_INVALID, got ${String(caught)}`);
  const problems = caught.details.problems as Array<{ variable: string; message: string }>;
  expect(problems.map((p) => p.variable).sort()).toEqual(
    ['DATABASE_URL', 'KAFKA_BROKERS', 'LOG_LEVEL', 'OUTBOX_LIVENESS_TIMEOUT', 'OUTBOX_RELAY_BATCH_SIZE', 'OUTBOX_SCHEMA', 'SCHEMA_REGISTRY_URL'].sort(),
  );
  for (const p of problems) {
    expect(p.message.startsWith(`${p.variable} `)).toBe(true);
    expect(caught.message).toContain(p.message);
  }
  expect(caught.details.variable).toBe(problems[0]!.variable);
  // Two required variables missing: both named.
  expect(configError({ SCHEMA_REGISTRY_URL: base.SCHEMA_REGISTRY_URL }).message).toMatch(/^DATABASE_URL is not set .*; KAFKA_BROKERS is not set/);
});

test('SASL without TLS is refused, naming the settings, unless explicitly allowed', () => {
  for (const mechanism of ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512']) {
    const e = configError({ ...base, KAFKA_SASL_MECHANISM: mechanism, KAFKA_SASL_USERNAME: 'relay', KAFKA_SASL_PASSWORD: 'sasl-pw-2' });
    expect(e.variable).toBe('KAFKA_TLS');
    expect(e.message).toMatch(new RegExp(`^KAFKA_TLS is off while KAFKA_SASL_MECHANISM=${mechanism} is set`));
    expect(e.message).toContain('KAFKA_TLS=true');
    expect(e.message).toContain('OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL=true');
    expect(e.message).not.toContain('sasl-pw-2');
  }
  expect(configError({ ...base, KAFKA_SASL_MECHANISM: 'PLAIN', KAFKA_SASL_USERNAME: 'relay', KAFKA_SASL_PASSWORD: 'sasl-pw-2' }).message).toContain(
    'PLAIN sends the password in clear',
  );
  const sasl = { KAFKA_SASL_MECHANISM: 'PLAIN', KAFKA_SASL_USERNAME: 'relay', KAFKA_SASL_PASSWORD: 'sasl-pw-2' };
  expect(loadConfig({ ...base, ...sasl, KAFKA_TLS: 'true' }, all).kafka).toMatchObject({ ssl: { rejectUnauthorized: true }, sasl: { mechanism: 'plain' } });
  const allowed = loadConfig({ ...base, ...sasl, OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL: 'true' }, all).kafka;
  expect(allowed).toMatchObject({ ssl: false, sasl: { mechanism: 'plain' }, allowPlaintextSasl: true });
  expect(configError({ ...base, OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL: 'maybe' }).variable).toBe('OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL');
  // Without SASL there are no credentials to protect: plaintext Kafka stays the default.
  expect(loadConfig(base, all).kafka.ssl).toBe(false);
});

test('the liveness timeout defaults to 2 minutes and takes a duration', () => {
  expect(loadConfig(base, all).livenessTimeoutMs).toBe(120_000);
  expect(loadConfig({ ...base, OUTBOX_LIVENESS_TIMEOUT: '45s' }, all).livenessTimeoutMs).toBe(45_000);
  expect(configError({ ...base, OUTBOX_LIVENESS_TIMEOUT: 'soon' }).message).toMatch(/^OUTBOX_LIVENESS_TIMEOUT must be a duration/);
  expect(configError({ ...base, OUTBOX_LIVENESS_TIMEOUT: '200ms' }).message).toMatch(/^OUTBOX_LIVENESS_TIMEOUT must be at least 1s/);
});

test('outbox relay with SASL over plaintext stops at start-up with the settings named, before connecting', async () => {
  const result = await runOutbox(
    ['relay'],
    childEnv({
      OUTBOX_ENV_FILE: emptyEnvFile(),
      DATABASE_URL: process.env.DATABASE_URL,
      KAFKA_BROKERS: process.env.KAFKA_BROKERS,
      SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL,
      KAFKA_SASL_MECHANISM: 'PLAIN',
      KAFKA_SASL_USERNAME: 'relay',
      KAFKA_SASL_PASSWORD: 'sasl-cli-pw-3',
    }),
  );
  expect(result.code).not.toBe(0);
  expect(result.stderr).toMatch(/KAFKA_TLS is off while KAFKA_SASL_MECHANISM=PLAIN is set/);
  expect(result.stderr).toContain('OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL=true');
  expect(result.stderr).not.toMatch(/unreachable|relay started|became the active relay/);
  expect(result.stdout + result.stderr).not.toContain('sasl-cli-pw-3');
});

test('the admin port is left to the component unless OUTBOX_ADMIN_PORT is set (0 turns it off)', () => {
  expect(loadConfig(base, all).adminPort).toBeUndefined();
  expect(loadConfig({ ...base, OUTBOX_ADMIN_PORT: '0' }, all).adminPort).toBe(0);
  expect(loadConfig({ ...base, OUTBOX_ADMIN_PORT: '9500' }, all).adminPort).toBe(9500);
});
