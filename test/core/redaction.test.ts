import { execFile, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../core/logger';
import { redact, redactDeep, registerSecret } from '../../core/redact';
import { childEnv, emptyEnvFile, REPO, runAll, runOutbox } from '../cli/run-outbox';
import { useTestDatabase, uniqueName } from '../support/isolation';

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
const db = useTestDatabase({ poolSize: 2 });
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
  // The local broker has no TLS listener; accepting SASL over plaintext lets the handshake really run.
  OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL: 'true',
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
    { args: ['relay', '--verbose'], env: env({ ...real, OUTBOX_KAFKA_ALLOW_PLAINTEXT_SASL: 'false' }) },
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

// The checkpoint signing key, in every form it could leak in: each line of its PEM body, the whole PKCS#8
// DER in base64 and hex, and the raw 32-byte Ed25519 seed in base64 and hex.
function signingKeyForms(pem: string): string[] {
  const der = Buffer.from(
    pem
      .split('\n')
      .filter((l) => l && !l.startsWith('-----'))
      .join(''),
    'base64',
  );
  const seed = der.subarray(der.length - 32);
  const body = pem.split('\n').filter((l) => l.length > 0 && !l.startsWith('-----'));
  return [...body, der.toString('base64'), der.toString('hex'), seed.toString('base64'), seed.toString('hex')];
}

test('the checkpoint signing key never appears in logs, outputs or PostgreSQL: checkpoint, relay with checkpoints, verify, prove, a malformed key', async () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const forms = signingKeyForms(pem);
  const malformed = 'canary-audit-key-Secret-10';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-redaction-'));
  const pub = path.join(dir, 'audit.pub');
  writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }).toString());
  const file = path.join(dir, 'checkpoints.jsonl');
  const schema = uniqueName('redact').toLowerCase();
  const env = (vars: Record<string, string> = {}) =>
    childEnv({
      OUTBOX_ENV_FILE: ENV_FILE,
      LOG_LEVEL: 'trace',
      DATABASE_URL: db.url,
      KAFKA_BROKERS: real.KAFKA_BROKERS,
      SCHEMA_REGISTRY_URL: real.SCHEMA_REGISTRY_URL,
      OUTBOX_SCHEMA: schema,
      OUTBOX_TOPIC_SUFFIX: `.${schema}`,
      OUTBOX_ADMIN_PORT: '0',
      OUTBOX_AUDIT_PRIVATE_KEY: pem,
      ...vars,
    });
  const leaked = (text: string) => [...forms, malformed].filter((f) => text.includes(f));

  expect((await runOutbox(['migrate'], env())).code).toBe(0);
  for (let i = 1; i <= 3; i++) {
    await db.pool.query(
      `INSERT INTO "${schema}".outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
       VALUES ('user', 'k', 'UserEmailChanged', 1, jsonb_build_object('email', $1::text), 'user:test', 'trace-redaction')`,
      [`k${i}@example.com`],
    );
  }
  const outputs: string[] = [];
  const run = async (args: string[], vars: Record<string, string> = {}) => {
    const r = await runOutbox(args, env(vars), 60_000);
    outputs.push(`${args.join(' ')}\n${r.stdout}${r.stderr}`);
    return r;
  };
  expect((await run(['audit', 'checkpoint', '--verbose', '--file', file])).code).toBe(0);
  const proof = await run(['audit', 'prove', 'user/k', '--version', '1', '--checkpoints', file, '--verbose']);
  expect(proof.code).toBe(0);
  expect((await run(['audit', 'verify', '--verbose', '--checkpoints', file, '--public-key', pub, '--no-kafka'])).code).toBe(0);
  expect((await run(['audit', 'checkpoint', '--verbose'], { OUTBOX_AUDIT_PRIVATE_KEY: malformed })).code).toBe(1);
  expect((await run(['audit', 'checkpoint', '--verbose', '--json'], { DATABASE_URL: 'postgres://u@127.0.0.1:1/outbox' })).code).not.toBe(0);
  expect((await run(['relay', '--verbose'], { OUTBOX_AUDIT_CHECKPOINT_EVERY: '1s', OUTBOX_AUDIT_PRIVATE_KEY: malformed })).code).toBe(1);

  // The relay taking checkpoints, while every session's query text on the database is sampled.
  const relay = spawn(process.execPath, [path.join(REPO, 'bin', 'outbox.js'), 'relay', '--verbose'], {
    cwd: REPO,
    env: env({ OUTBOX_AUDIT_CHECKPOINT_EVERY: '1s', OUTBOX_AUDIT_CHECKPOINT_FILE: file, OUTBOX_INSTANCE_ID: uniqueName('r') }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let relayOut = '';
  relay.stdout.on('data', (d: Buffer) => (relayOut += d.toString()));
  relay.stderr.on('data', (d: Buffer) => (relayOut += d.toString()));
  const exited = new Promise<number | null>((resolve) => relay.on('close', (code) => resolve(code)));
  let sessions = '';
  try {
    const deadline = Date.now() + 90_000;
    while ((relayOut.match(/"msg":"checkpoint written"/g) ?? []).length < 2) {
      if (Date.now() > deadline || relay.exitCode !== null) throw new Error(`the relay took no checkpoints: ${relayOut}`);
      const { rows } = await db.pool.query<{ t: string }>(
        `SELECT coalesce(application_name, '') || ' ' || coalesce(query, '') AS t FROM pg_stat_activity WHERE datname = current_database()`,
      );
      sessions += rows.map((r) => r.t).join('\n');
      await new Promise((r) => setTimeout(r, 100));
    }
    relay.kill('SIGTERM');
    expect(await exited).toBe(0);
  } finally {
    if (relay.exitCode === null) relay.kill('SIGKILL');
  }
  outputs.push(relayOut);
  expect(sessions).toContain('outbox-audit-checkpoint');

  // Nothing the key signed carries it, nor any output, nor any table, setting or session of the database.
  const dump = await new Promise<string>((resolve, reject) =>
    execFile('pg_dump', ['--dbname', db.url], { maxBuffer: 256 * 1024 * 1024 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  expect(dump).toContain('k3@example.com'); // the dump holds the history
  const settings = await db.pool.query<{ t: string }>(
    `SELECT string_agg(name || '=' || setting, E'\n') AS t FROM pg_settings UNION ALL SELECT string_agg(array_to_string(setconfig, ','), E'\n') FROM pg_db_role_setting`,
  );
  const places = { outputs: outputs.join('\n'), checkpoints: readFileSync(file, 'utf8'), proof: proof.stdout, dump, settings: settings.rows.map((r) => r.t).join('\n'), sessions };
  for (const [where, text] of Object.entries(places)) expect({ where, leaked: leaked(text) }).toEqual({ where, leaked: [] });
}, 300_000);

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

test('redactDeep keeps dates (JSON output prints them as ISO-8601, not {})', () => {
  expect(JSON.stringify(redactDeep({ oldestUndeliveredAt: new Date(0), events: [{ occurred_at: new Date(1000) }] }))).toBe(
    '{"oldestUndeliveredAt":"1970-01-01T00:00:00.000Z","events":[{"occurred_at":"1970-01-01T00:00:01.000Z"}]}',
  );
});
