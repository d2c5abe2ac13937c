import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { childEnv, emptyEnvFile, REPO, runOutbox } from '../cli/run-outbox';
import { useTestDatabase, uniqueName } from '../support/isolation';

// `outbox relay` with OUTBOX_AUDIT_CHECKPOINT_EVERY: signed checkpoints are taken beside the relay, in the
// same process, to the checkpoint topic and the file; they verify; SIGTERM stops both with exit code 0.
const db = useTestDatabase({ poolSize: 2 });
const ENV_FILE = emptyEnvFile();
const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-relay-checkpoint-'));
const keyFile = path.join(dir, 'audit.key');
let schema = '';
const env = (vars: Record<string, string> = {}) =>
  childEnv({
    OUTBOX_ENV_FILE: ENV_FILE,
    DATABASE_URL: db.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
    SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
    OUTBOX_SCHEMA: schema,
    OUTBOX_ADMIN_PORT: '0',
    OUTBOX_TOPIC_SUFFIX: `.${schema}`,
    OUTBOX_INSTANCE_ID: uniqueName('r'),
    LOG_LEVEL: 'info',
    ...vars,
  });

async function insert(aggregateId: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await db.pool.query(
      `INSERT INTO "${schema}".outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
       VALUES ('user', $1, 'UserEmailChanged', 1, jsonb_build_object('email', $2::text), 'user:test', 'trace-relay-checkpoint')`,
      [aggregateId, `${aggregateId}-${i}@example.com`],
    );
  }
}

const lines = (file: string): Array<{ eventCount: string; coveredId: string }> =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as { eventCount: string; coveredId: string })
    : [];

beforeAll(async () => {
  schema = uniqueName('relaycp').toLowerCase();
  const m = await runOutbox(['migrate'], env());
  expect(m.code).toBe(0);
  expect((await runOutbox(['audit', 'keygen', '--out', keyFile], env())).code).toBe(0);
}, 60_000);

test('the relay takes signed checkpoints on its interval, to the topic and the file, and they verify; SIGTERM stops both', async () => {
  await insert('a', 3);
  const file = path.join(dir, 'relay.jsonl');
  const child = spawn(process.execPath, [path.join(REPO, 'bin', 'outbox.js'), 'relay'], {
    cwd: REPO,
    env: env({ OUTBOX_AUDIT_CHECKPOINT_EVERY: '1s', OUTBOX_AUDIT_CHECKPOINT_FILE: file, OUTBOX_AUDIT_PRIVATE_KEY_FILE: keyFile }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  try {
    const waitFor = async (what: string, ok: () => boolean): Promise<void> => {
      const deadline = Date.now() + 90_000;
      while (!ok()) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${what}: ${stderr}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    await waitFor('no checkpoint of the first 3 events', () => lines(file).some((c) => c.eventCount === '3'));
    // Events written while it runs are covered by a later checkpoint.
    await insert('b', 2);
    await waitFor('no checkpoint of all 5 events', () => lines(file).some((c) => c.eventCount === '5'));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  expect(stderr).not.toMatch(/"level":(50|60)/);
  expect(stderr).toMatch(/"component":"audit-checkpoint".*"msg":"checkpoint written"/);
  expect(stderr).not.toContain(readFileSync(keyFile, 'utf8').split('\n')[1]!);

  const topic = `${schema}.outbox.checkpoints`;
  const admin = new Kafka({ brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    expect(Number(offsets[0]!.high)).toBeGreaterThanOrEqual(2);
  } finally {
    await admin.disconnect();
  }
  for (const source of [file, topic]) {
    const v = await runOutbox(['audit', 'verify', '--checkpoints', source, '--public-key', `${keyFile}.pub`, '--no-kafka'], env());
    expect(v.stderr).toBe('');
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/checkpoints verified: \d+ signed checkpoint\(s\) reproduced by the history/);
  }
}, 180_000);

test('with OUTBOX_AUDIT_CHECKPOINT_EVERY but no signing key, the relay does not start (exit 1, one line)', async () => {
  const r = await runOutbox(['relay'], env({ OUTBOX_AUDIT_CHECKPOINT_EVERY: '1m' }));
  expect(r.code).toBe(1);
  expect(r.lines).toEqual([expect.stringContaining('outbox: no checkpoint signing key')]);
  const bad = await runOutbox(['relay'], env({ OUTBOX_AUDIT_CHECKPOINT_EVERY: '10ms', OUTBOX_AUDIT_PRIVATE_KEY_FILE: keyFile }));
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toContain('OUTBOX_AUDIT_CHECKPOINT_EVERY must be 0 (off) or at least 1s');
});
