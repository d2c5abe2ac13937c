import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, readEnvironment, type ConfigNeeds, type Env } from '../../core/config';
import { isOutboxError } from '../../core/errors';

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
