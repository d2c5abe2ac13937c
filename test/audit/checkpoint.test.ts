import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigResourceTypes, Kafka, logLevel } from 'kafkajs';
import { childEnv, emptyEnvFile, REPO, runOutbox } from '../cli/run-outbox';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { ownerRewrite } from './owner-rewrite';

// Signed checkpoints against the real PostgreSQL and Kafka, through the `outbox` command as an operator
// and an auditor would run it. The outbox lives in a schema of this file's own, so that its checkpoint
// topic `<schema>.outbox.checkpoints` is its own too.
const db = useTestDatabase({ poolSize: 2 });
const ENV_FILE = emptyEnvFile();
const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-audit-'));
const keyFile = path.join(dir, 'audit.key');
const checkpointFile = path.join(dir, 'checkpoints.jsonl');
const headsFile = path.join(dir, 'checkpoints-with-heads.jsonl');
let schema = '';
const env = (vars: Record<string, string> = {}) =>
  childEnv({ OUTBOX_ENV_FILE: ENV_FILE, DATABASE_URL: db.url, KAFKA_BROKERS: process.env.KAFKA_BROKERS!, OUTBOX_SCHEMA: schema, ...vars });
const kafka = new Kafka({ brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });

async function insert(aggregateId: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await db.pool.query(
      `INSERT INTO "${schema}".outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
       VALUES ('user', $1, 'UserEmailChanged', 1, jsonb_build_object('email', $2::text), 'user:test', 'trace-audit')`,
      [aggregateId, `${aggregateId}-${i}@example.com`],
    );
  }
}

beforeAll(async () => {
  schema = uniqueName('audit').toLowerCase();
  const m = await runOutbox(['migrate'], env());
  expect(m.stderr).toBe('');
  expect(m.code).toBe(0);
});

test('keygen writes the private key with mode 0600 and the public key beside it, and never prints the private key', async () => {
  const r = await runOutbox(['audit', 'keygen', '--out', keyFile], env());
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  const privatePem = readFileSync(keyFile, 'utf8');
  expect(privatePem).toContain('BEGIN PRIVATE KEY');
  expect(readFileSync(`${keyFile}.pub`, 'utf8')).toContain('BEGIN PUBLIC KEY');
  expect(r.stdout).toMatch(/key id: +[0-9a-f]{16}/);
  expect(r.stdout).toContain('BEGIN PUBLIC KEY');
  expect(r.stdout).not.toContain(privatePem.split('\n')[1]!);
  const again = await runOutbox(['audit', 'keygen', '--out', keyFile], env());
  expect(again.code).not.toBe(0);
  expect(again.stderr).toContain('already exists');
});

test('a checkpoint goes to the compacted checkpoint topic (keyed by its covered id) and to the file, and verifies', async () => {
  await insert('a', 5);
  await insert('b', 2);
  const r = await runOutbox(['audit', 'checkpoint', '--file', checkpointFile, '--json'], env({ OUTBOX_AUDIT_PRIVATE_KEY_FILE: keyFile }));
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const c = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
  expect(c).toMatchObject({ format: 1, schema, eventCount: '7', aggregateCount: 2 });
  const lines = readFileSync(checkpointFile, 'utf8').trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(JSON.parse(lines[0]!)).toEqual(c);

  const topic = `${schema}.outbox.checkpoints`;
  const admin = kafka.admin();
  await admin.connect();
  try {
    const configs = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['cleanup.policy'] }] });
    expect(configs.resources[0]?.configEntries.find((e) => e.configName === 'cleanup.policy')?.configValue).toBe('compact');
    const offsets = await admin.fetchTopicOffsets(topic);
    expect(offsets.map((o) => Number(o.high) - Number(o.low))).toEqual([1]);
  } finally {
    await admin.disconnect();
  }

  // The private key given in the environment instead of a file signs with the same key id.
  const fromEnv = await runOutbox(['audit', 'checkpoint', '--json'], env({ OUTBOX_AUDIT_PRIVATE_KEY: readFileSync(keyFile, 'utf8') }));
  expect(fromEnv.code).toBe(0);
  expect(JSON.parse(fromEnv.stdout.trim())).toMatchObject({ keyId: c.keyId, root: c.root, coveredId: c.coveredId });

  // With --file-heads the file line also keeps every head (the topic record does not).
  const withHeads = await runOutbox(['audit', 'checkpoint', '--file', headsFile, '--file-heads', '--json'], env({ OUTBOX_AUDIT_PRIVATE_KEY_FILE: keyFile }));
  expect(withHeads.code).toBe(0);
  expect(JSON.parse(withHeads.stdout.trim())).not.toHaveProperty('heads');
  const headsLine = JSON.parse(readFileSync(headsFile, 'utf8').trim()) as { root: string; heads: string[][] };
  expect(headsLine.root).toBe(c.root);
  expect(headsLine.heads.map((h) => `${h[0]}/${h[1]} v${h[2]}`).sort()).toEqual(['user/a v5', 'user/b v2']);

  // Later events do not change what an earlier checkpoint covers.
  await insert('c', 3);
  const v = await runOutbox(['audit', 'verify', '--checkpoints', checkpointFile, '--public-key', `${keyFile}.pub`, '--no-kafka'], env());
  expect(v.stderr).toBe('');
  expect(v.code).toBe(0);
  expect(v.stdout).toContain('checkpoints verified: 1 signed checkpoint(s)');
  const vt = await runOutbox(['audit', 'verify', '--checkpoints', topic, '--public-key', `${keyFile}.pub`, '--no-kafka'], env());
  expect(vt.stderr).toBe('');
  expect(vt.code).toBe(0);
  expect(vt.stdout).toContain('checkpoints verified: 3 signed checkpoint(s)'); // the plain one, the one from the environment, the one with heads
});

test('a checkpoint signed by another key, or edited, does not verify', async () => {
  const otherKey = path.join(dir, 'other.key');
  expect((await runOutbox(['audit', 'keygen', '--out', otherKey], env())).code).toBe(0);
  const wrongKey = await runOutbox(['audit', 'verify', '--checkpoints', checkpointFile, '--public-key', `${otherKey}.pub`, '--no-kafka'], env());
  expect(wrongKey.code).toBe(1);
  expect(wrongKey.stderr).toMatch(/checkpoint .*checkpoints\.jsonl:1 .*signed by key [0-9a-f]{16}, not by the given public key/);

  const edited = path.join(dir, 'edited.jsonl');
  const line = JSON.parse(readFileSync(checkpointFile, 'utf8').trim().split('\n')[0]!) as Record<string, unknown>;
  require('node:fs').writeFileSync(edited, `${JSON.stringify({ ...line, eventCount: '6' })}\n`);
  const bad = await runOutbox(['audit', 'verify', '--checkpoints', edited, '--public-key', `${keyFile}.pub`, '--no-kafka'], env());
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain('signature does not verify');
});

test('the owner rewrite (triggers off, v3 changed, v5 deleted, chain and head recomputed) passes the chain check but not the checkpoints', async () => {
  await ownerRewrite(db.pool, { schema, aggregateType: 'user', aggregateId: 'a' });
  const plain = await runOutbox(['audit', 'verify', '--no-kafka'], env());
  expect(plain.code).toBe(0);
  expect(plain.stdout).toMatch(/^chain verified: 9 event\(s\)/);

  const c = JSON.parse(readFileSync(checkpointFile, 'utf8').trim().split('\n')[0]!) as { coveredId: string; timestamp: string };
  for (const source of [checkpointFile, `${schema}.outbox.checkpoints`]) {
    const r = await runOutbox(['audit', 'verify', '--checkpoints', source, '--public-key', `${keyFile}.pub`, '--no-kafka'], env());
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('chain verified: 9 event(s)');
    expect(r.stdout).toContain('checkpoints FAILED');
    expect(r.stderr).toContain(`(covered id ${c.coveredId}, taken ${c.timestamp}): history up to outbox id ${c.coveredId} was changed: event count 7 signed, 6 now`);
    expect(r.stderr).toMatch(/root [0-9a-f]{64} signed, [0-9a-f]{64} recomputed/);
  }

  // With the heads kept beside the checkpoint, verify names the first aggregate and version that differs.
  const named = await runOutbox(['audit', 'verify', '--checkpoints', headsFile, '--public-key', `${keyFile}.pub`, '--no-kafka', '--json'], env());
  expect(named.code).toBe(1);
  const result = JSON.parse(named.stdout) as { checkpoints: { problems: Array<{ aggregateType: string; aggregateId: string; version: string; problem: string }> } };
  expect(result.checkpoints.problems).toEqual([
    expect.objectContaining({
      aggregateType: 'user',
      aggregateId: 'a',
      version: '5',
      problem: expect.stringContaining('first difference at user/a v5: signed with head v5, now v4: missing version 5'),
    }),
  ]);
});

test('the signing key never appears in the output, not with --verbose, not when it is malformed, not when PostgreSQL is unreachable', async () => {
  const pem = readFileSync(keyFile, 'utf8');
  const body = pem.split('\n').filter((l) => l.length > 0 && !l.startsWith('-----'));
  const canary = 'canary-audit-key-Secret-6-not-a-key';
  const cases = [
    await runOutbox(['audit', 'checkpoint', '--verbose'], env({ OUTBOX_AUDIT_PRIVATE_KEY: pem, LOG_LEVEL: 'trace' })),
    await runOutbox(['audit', 'checkpoint', '--verbose'], env({ OUTBOX_AUDIT_PRIVATE_KEY: canary, LOG_LEVEL: 'trace' })),
    await runOutbox(['audit', 'checkpoint', '--verbose', '--json'], env({ OUTBOX_AUDIT_PRIVATE_KEY: pem, LOG_LEVEL: 'trace', DATABASE_URL: 'postgres://u@127.0.0.1:1/outbox' })),
  ];
  expect(cases.map((c) => c.code)).toEqual([0, 1, expect.any(Number)]);
  expect(cases[1]!.stderr).toContain('OUTBOX_AUDIT_PRIVATE_KEY is not a readable private key');
  expect(cases[2]!.code).not.toBe(0);
  for (const c of cases) {
    const text = c.stdout + c.stderr;
    expect(body.filter((line) => text.includes(line))).toEqual([]);
    expect(text).not.toContain(canary);
  }
});

test('--every takes checkpoints until SIGTERM, then exits 0', async () => {
  const file = path.join(dir, 'every.jsonl');
  const child = spawn(process.execPath, [path.join(REPO, 'bin', 'outbox.js'), 'audit', 'checkpoint', '--every', '1s', '--file', file], {
    cwd: REPO,
    env: env({ OUTBOX_AUDIT_PRIVATE_KEY_FILE: keyFile }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 60_000;
    while ((stdout.match(/^checkpoint at outbox id /gm) ?? []).length < 2) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no second checkpoint: ${stdout}${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
  expect(stderr).toBe('');
  expect(readFileSync(file, 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(2);
});
