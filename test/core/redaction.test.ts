import { Writable } from 'node:stream';
import { createLogger } from '../../core/logger';
import { redact, redactDeep, registerSecret } from '../../core/redact';
import { childEnv, emptyEnvFile, runAll } from '../cli/run-outbox';

// Canary secrets in every secret setting (the PostgreSQL password inside DATABASE_URL, the Kafka SASL
// password, the registry password as a variable and inside the URL) never appear in any log line or
// error output. The real code paths run: the CLI as a child process, with --verbose (debug logs and
// stack traces), against unreachable hosts and against the real servers refusing the connection.
const CANARY = {
  db: 'canary/db+Secret-1', // needs URL encoding inside DATABASE_URL
  sasl: 'canary-sasl-Secret-2',
  registry: 'canary-registry-Secret-3',
  registryUrl: 'canary-regurl-Secret-4',
};
const ENCODED_DB = encodeURIComponent(CANARY.db);
const ENV_FILE = emptyEnvFile();
const real = { DATABASE_URL: process.env.DATABASE_URL!, KAFKA_BROKERS: process.env.KAFKA_BROKERS!, SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL! };
const realDb = new URL(real.DATABASE_URL);

function dbUrl(host: string, database: string): string {
  return `postgres://canary_user:${ENCODED_DB}@${host}/${database}`;
}

const secrets = {
  KAFKA_SASL_MECHANISM: 'SCRAM-SHA-256',
  KAFKA_SASL_USERNAME: 'canary_user',
  KAFKA_SASL_PASSWORD: CANARY.sasl,
  SCHEMA_REGISTRY_USERNAME: 'canary_user',
  SCHEMA_REGISTRY_PASSWORD: CANARY.registry,
};

function leaks(text: string): string[] {
  return [...Object.values(CANARY), ENCODED_DB, encodeURIComponent(CANARY.sasl)].filter((c) => text.includes(c));
}

test('CLI output never contains a secret: unreachable hosts, refusing servers, --verbose, --json', async () => {
  const env = (vars: Record<string, string>) => childEnv({ OUTBOX_ENV_FILE: ENV_FILE, LOG_LEVEL: 'trace', ...secrets, ...vars });
  const unreachable = env({ DATABASE_URL: dbUrl('127.0.0.1:1', 'outbox'), KAFKA_BROKERS: '127.0.0.1:1', SCHEMA_REGISTRY_URL: 'http://127.0.0.1:1' });
  const refusing = env({
    DATABASE_URL: dbUrl(`${realDb.hostname}:${realDb.port || '5432'}`, 'no_such_database_canary'),
    KAFKA_BROKERS: real.KAFKA_BROKERS, // the broker has no SASL listener: the handshake fails
    SCHEMA_REGISTRY_URL: real.SCHEMA_REGISTRY_URL,
  });
  const urlCreds = env({
    DATABASE_URL: dbUrl('127.0.0.1:1', 'outbox'),
    KAFKA_BROKERS: '127.0.0.1:1',
    SCHEMA_REGISTRY_URL: `http://canary_user:${CANARY.registryUrl}@127.0.0.1:1/apis/ccompat/v7`,
    SCHEMA_REGISTRY_USERNAME: '',
    SCHEMA_REGISTRY_PASSWORD: '',
  });
  const cases = [
    { args: ['status', '--json', '--verbose'], env: unreachable },
    { args: ['status', '--verbose'], env: refusing },
    { args: ['migrate', '--verbose'], env: unreachable },
    { args: ['migrate', '--verbose', '--json'], env: refusing },
    { args: ['relay', '--verbose'], env: { ...refusing, DATABASE_URL: real.DATABASE_URL } },
    { args: ['parked', 'list', '--verbose'], env: refusing },
    { args: ['audit', 'history', 'user/1', '--verbose'], env: unreachable },
    { args: ['schemas', 'check', '--verbose'], env: urlCreds },
    { args: ['status', '--json', '--verbose'], env: urlCreds },
    // config errors next to secrets
    { args: ['relay', '--verbose'], env: env({ ...real, KAFKA_SASL_MECHANISM: 'bogus' }) },
    { args: ['status', '--verbose'], env: env({ ...real, SCHEMA_REGISTRY_USERNAME: '' }) },
    { args: ['migrate', '--verbose'], env: env({ DATABASE_URL: `postgres://canary_user:${ENCODED_DB}@127.0.0.1:notaport/db` }) },
  ];
  const results = await runAll(cases);
  for (const c of results) {
    const label = `outbox ${c.args.join(' ')}`;
    expect({ label, code: c.result.code === 0 }).toEqual({ label, code: false }); // every case fails somewhere
    expect({ label, stderr: c.result.stderr.length > 0 }).toEqual({ label, stderr: true });
    expect({ label, leaks: leaks(c.result.stdout + c.result.stderr) }).toEqual({ label, leaks: [] });
  }
  // The verbose runs really did print stacks and the refused SASL handshake is named.
  const relay = results[4]!.result;
  expect(relay.stderr).toMatch(/Kafka at .* is unreachable/);
  expect(results[1]!.result.stderr).toMatch(/PostgreSQL at .*no_such_database_canary refused the connection/);
  expect(results[2]!.result.stderr).toMatch(/\n\s+at /);
});

test('logger: URL passwords and registered secrets are masked in messages, objects, errors, causes and child bindings', () => {
  const secret = 'canary-logger-Secret-5';
  registerSecret(secret);
  let text = '';
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      text += chunk.toString();
      cb();
    },
  });
  const logger = createLogger({ level: 'trace', destination: destination as never });
  const child = logger.child({ databaseUrl: `postgres://u:${secret}@h/db`, note: `has ${secret}` });
  child.info('plain');
  child.child({ nested: { url: 'https://u:other-Secret-6@reg/x' } }).debug('grandchild');
  logger.info(`message with ${secret} and postgres://u:other-Secret-7@h/db`);
  logger.error({ err: new Error(`connect failed for postgres://u:${secret}@h/db`, { cause: new Error(`inner ${secret}`) }) }, 'failed');
  logger.warn({ config: { kafka: { sasl: { password: 'other-Secret-8' } } }, password: 'other-Secret-9' }, 'config');
  logger.info('formatted %s', secret);
  expect(text.split('\n').filter(Boolean)).toHaveLength(6);
  for (const s of [secret, 'other-Secret-6', 'other-Secret-7', 'other-Secret-8', 'other-Secret-9']) expect(text).not.toContain(s);
  expect(text).toContain('postgres://u:***@h/db');
});

test('redact and redactDeep', () => {
  registerSecret('p/w+Secret-10');
  expect(redact('x postgres://user:p%2Fw%2BSecret-10@h/db y')).toBe('x postgres://user:***@h/db y');
  expect(redact('pw is p/w+Secret-10')).toBe('pw is ***');
  expect(redact('password=abc&user=x token: "t0k"')).toBe('password=***&user=x token: "***"');
  expect(redactDeep({ a: ['p/w+Secret-10'], Authorization: 'Basic abc', n: 1 })).toEqual({ a: ['***'], Authorization: '***', n: 1 });
});
