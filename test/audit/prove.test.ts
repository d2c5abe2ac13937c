import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkInclusionProof } from '../../audit/check-proof';
import { loadPublicKey } from '../../audit/keys';
import { childEnv, emptyEnvFile, REPO, runOutbox } from '../cli/run-outbox';
import { useTestDatabase, uniqueName } from '../support/isolation';

// Inclusion proofs made by `outbox audit prove` against real PostgreSQL and Kafka, checked offline by
// `outbox audit check-proof` and by the independent standard-library Python verifier (tools/check-proof.py).
const db = useTestDatabase({ poolSize: 2 });
const ENV_FILE = emptyEnvFile();
const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-prove-'));
const keyFile = path.join(dir, 'audit.key');
const pubFile = `${keyFile}.pub`;
const checkpointFile = path.join(dir, 'checkpoints.jsonl');
const PYTHON = process.env.OUTBOX_TEST_PYTHON ?? 'python3';
const CHECKER = path.join(REPO, 'tools', 'check-proof.py');
let schema = '';
const env = (vars: Record<string, string> = {}) =>
  childEnv({ OUTBOX_ENV_FILE: ENV_FILE, DATABASE_URL: db.url, KAFKA_BROKERS: process.env.KAFKA_BROKERS!, OUTBOX_SCHEMA: schema, ...vars });

function python(args: string[], timeoutMs = 300_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(PYTHON, args, { cwd: REPO, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function insert(aggregateType: string, aggregateId: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await db.pool.query(
      `INSERT INTO "${schema}".outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
       VALUES ($1, $2, 'UserEmailChanged', 1, jsonb_build_object('email', $3::text, 'n', $4::int, 'tags', jsonb_build_array('ü', '🎉')), 'user:test', 'trace-prove', NULL)`,
      [aggregateType, aggregateId, `${aggregateId}-${i}@example.com`, i],
    );
  }
}

async function prove(args: string[]): Promise<string> {
  const r = await runOutbox(['audit', 'prove', ...args], env());
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout;
}

beforeAll(async () => {
  schema = uniqueName('prove').toLowerCase();
  const m = await runOutbox(['migrate'], env());
  expect(m.code).toBe(0);
  expect((await runOutbox(['audit', 'keygen', '--out', keyFile], env())).code).toBe(0);
  // Seven aggregates (a tree that is not a power of two), a few versions each, names that need UTF-8.
  for (const [t, id, n] of [
    ['user', 'a', 5],
    ['user', 'b', 2],
    ['user', 'é/1', 3],
    ['order', '42', 1],
    ['order', '7', 4],
    ['user', 'B', 1],
    ['invoice', 'x', 2],
  ] as const)
    await insert(t, id, n);
  const c = await runOutbox(['audit', 'checkpoint', '--file', checkpointFile], env({ OUTBOX_AUDIT_PRIVATE_KEY_FILE: keyFile }));
  expect(c.stderr).toBe('');
  expect(c.code).toBe(0);
  // Events after the checkpoint: not covered, and they do not disturb proofs against it.
  await insert('user', 'a', 2);
}, 120_000);

test('a proof of an untouched event verifies offline in the TypeScript and the Python verifier', async () => {
  const proofFile = path.join(dir, 'user-a-v2.json');
  writeFileSync(proofFile, await prove(['user/a', '--version', '2', '--checkpoints', checkpointFile]));
  const proof = JSON.parse(readFileSync(proofFile, 'utf8')) as { event: { version: string }; chain: { version: string }[]; merkle: { treeSize: number } };
  expect(proof.event.version).toBe('2');
  expect(proof.chain.map((l) => l.version)).toEqual(['3', '4', '5']); // up to the head as of the checkpoint, not v7
  expect(proof.merkle.treeSize).toBe(7);

  const ts = await runOutbox(['audit', 'check-proof', proofFile, '--public-key', pubFile], childEnv({ OUTBOX_ENV_FILE: ENV_FILE }));
  expect(ts.stderr).toBe('');
  expect(ts.code).toBe(0);
  expect(ts.stdout).toMatch(/^proof holds: user\/a v2 \(event [0-9a-f-]{36}\)/);
  expect(ts.stdout).toContain('payload           {"n": 1, "tags": ["ü", "🎉"], "email": "a-1@example.com"}');

  const py = await python([CHECKER, proofFile, '--public-key', pubFile]);
  expect(py.stderr).toBe('');
  expect(py.code).toBe(0);
  expect(py.stdout).toBe(ts.stdout);
});

test('proofs of every aggregate head (read from the checkpoint topic) and of a first version verify in both', async () => {
  for (const ref of ['user/a', 'user/b', 'user/é/1', 'order/42', 'order/7', 'user/B', 'invoice/x']) {
    const file = path.join(dir, `head-${ref.replace(/\W/g, '_')}.json`);
    writeFileSync(file, await prove([ref]));
    const proof = JSON.parse(readFileSync(file, 'utf8')) as { chain: unknown[] };
    expect(proof.chain).toEqual([]);
    expect(checkInclusionProof(readFileSync(file, 'utf8'), loadPublicKey(pubFile).publicKey)).toMatchObject({ ok: true });
    const py = await python([CHECKER, file, '--public-key', pubFile]);
    expect(`${ref}: ${py.code} ${py.stderr}`).toBe(`${ref}: 0 `);
  }
  const first = path.join(dir, 'order-7-v1.json');
  writeFileSync(first, await prove(['order/7', '--version', '1']));
  expect((await runOutbox(['audit', 'check-proof', first, '--public-key', pubFile], childEnv({ OUTBOX_ENV_FILE: ENV_FILE }))).code).toBe(0);
  expect((await python([CHECKER, first, '--public-key', pubFile])).code).toBe(0);
});

test('flipping any one byte of the proof fails it in both verifiers; so does another public key', async () => {
  const proofFile = path.join(dir, 'user-e-v1.json');
  writeFileSync(proofFile, await prove(['user/é/1', '--version', '1', '--checkpoints', checkpointFile]));
  const original = readFileSync(proofFile);
  const { publicKey } = loadPublicKey(pubFile);
  expect(checkInclusionProof(original.toString('utf8'), publicKey)).toMatchObject({ ok: true });

  const held: number[] = [];
  for (let i = 0; i < original.length; i++) {
    const flipped = Buffer.from(original);
    flipped[i] = flipped[i]! ^ 0x01;
    if (checkInclusionProof(flipped.toString('utf8'), publicKey).ok) held.push(i);
  }
  expect(held).toEqual([]);

  // The Python verifier, on every flipped copy in one process (the module loaded from the tool file).
  const driver = [
    'import importlib.util, sys',
    'spec = importlib.util.spec_from_file_location("check_proof", sys.argv[1]); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)',
    'key = m.public_key_from_pem(open(sys.argv[3]).read()); data = open(sys.argv[2], "rb").read()',
    'm.check_proof(data, key)',
    'held = []',
    'for i in range(len(data)):',
    '    b = bytearray(data); b[i] ^= 1',
    '    try:',
    '        m.check_proof(bytes(b), key); held.append(i)',
    '    except m.ProofError:',
    '        pass',
    'print("checked %d held %s" % (len(data), held))',
  ].join('\n');
  const py = await python(['-c', driver, CHECKER, proofFile, pubFile]);
  expect(py.stderr).toBe('');
  expect(py.stdout.trim()).toBe(`checked ${original.length} held []`);

  // And through both command lines, one flip inside the event's payload.
  const at = original.indexOf('é/1-0@example.com');
  expect(at).toBeGreaterThan(0);
  const one = Buffer.from(original);
  one[at + 4] = one[at + 4]! ^ 0x01;
  const bad = path.join(dir, 'flipped.json');
  writeFileSync(bad, one);
  const ts = await runOutbox(['audit', 'check-proof', bad, '--public-key', pubFile], childEnv({ OUTBOX_ENV_FILE: ENV_FILE }));
  expect(ts.code).toBe(1);
  expect(ts.stderr).toContain('outbox: proof does NOT hold: event: hash');
  const pyBad = await python([CHECKER, bad, '--public-key', pubFile]);
  expect(pyBad.code).toBe(1);
  expect(pyBad.stderr).toContain('proof does NOT hold: event: hash');

  const otherKey = path.join(dir, 'other.key');
  expect((await runOutbox(['audit', 'keygen', '--out', otherKey], env())).code).toBe(0);
  const wrongTs = await runOutbox(['audit', 'check-proof', proofFile, '--public-key', `${otherKey}.pub`], childEnv({ OUTBOX_ENV_FILE: ENV_FILE }));
  expect(wrongTs.code).toBe(1);
  expect(wrongTs.stderr).toMatch(/the checkpoint names key [0-9a-f]{16}, the public key given is [0-9a-f]{16}/);
  const wrongPy = await python([CHECKER, proofFile, '--public-key', `${otherKey}.pub`]);
  expect(wrongPy.code).toBe(1);
  expect(wrongPy.stderr).toMatch(/the checkpoint names key [0-9a-f]{16}, the public key given is [0-9a-f]{16}/);
}, 600_000);

test('an event newer than the latest checkpoint has no proof yet; a history that no longer reproduces the checkpoint gives none', async () => {
  const newer = await runOutbox(['audit', 'prove', 'user/a', '--version', '7', '--checkpoints', checkpointFile], env());
  expect(newer.code).not.toBe(0);
  expect(newer.stderr).toMatch(/user\/a v7 \(outbox id \d+\) is newer than the latest checkpoint \(covered id \d+\): take a checkpoint first/);
  const missing = await runOutbox(['audit', 'prove', 'user/zz', '--checkpoints', checkpointFile], env());
  expect(missing.code).not.toBe(0);
  expect(missing.stderr).toContain('user/zz has no event covered by the latest checkpoint');

  await db.pool.query(`ALTER TABLE "${schema}".outbox DISABLE TRIGGER USER`);
  await db.pool.query(`UPDATE "${schema}".outbox SET payload = '{"email": "forged@example.com"}' WHERE aggregate_type = 'user' AND aggregate_id = 'b' AND aggregate_version = 2`);
  await db.pool.query(
    `UPDATE "${schema}".outbox o SET hash = sha256(o.prev_hash || "${schema}".outbox_canonical_encoding(o.event_id, o.aggregate_type, o.aggregate_id, o.aggregate_version,
        o.event_type, o.schema_version, o.occurred_at, o.actor_id, o.trace_id, o.correlation_id, o.causation_id, o.traceparent, o.payload))
      WHERE aggregate_type = 'user' AND aggregate_id = 'b' AND aggregate_version = 2`,
  );
  await db.pool.query(`ALTER TABLE "${schema}".outbox ENABLE TRIGGER USER`);
  const rewritten = await runOutbox(['audit', 'prove', 'user/a', '--version', '1', '--checkpoints', checkpointFile], env());
  expect(rewritten.code).not.toBe(0);
  expect(rewritten.stderr).toMatch(/the history no longer reproduces the checkpoint at covered id \d+/);
});
