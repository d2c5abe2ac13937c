import { Writable } from 'node:stream';
import { generateKeyPairSync } from 'node:crypto';
import pino from 'pino';
import { historyAt, keyIdOf, takeCheckpoint, verifyCheckpoints, type SigningKey } from '../../audit';
import { useTestDatabase } from '../support/isolation';

// The covered id of a checkpoint must be stable: ids are drawn before commit, so a transaction still open
// may commit a lower id than rows already visible. The checkpoint waits for it instead of signing a root
// that the history would no longer reproduce once it commits.
const db = useTestDatabase({ poolSize: 4 });
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const key: SigningKey = { privateKey, publicKey, keyId: keyIdOf(publicKey) };

const INSERT = `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
  VALUES ('user', $1, 'UserEmailChanged', 1, '{"email": "x@example.com"}', 'user:test', 'trace-covered') RETURNING id::text`;

test('a checkpoint waits for an open transaction that holds a lower outbox id, and covers its row once it commits', async () => {
  const lines: string[] = [];
  let sawWait: () => void = () => undefined;
  const waiting = new Promise<void>((r) => (sawWait = r));
  const logger = pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        if (chunk.toString().includes('checkpoint waits for open outbox writers')) sawWait();
        cb();
      },
    }),
  );
  const open = await db.pool.connect();
  try {
    await open.query('BEGIN');
    const low = (await open.query<{ id: string }>(INSERT, ['slow'])).rows[0]!.id;
    const high = (await db.pool.query<{ id: string }>(INSERT, ['fast'])).rows[0]!.id;
    expect(BigInt(low)).toBeLessThan(BigInt(high));

    const checkpoint = takeCheckpoint(db.pool, { schema: 'outbox', key, logger });
    await waiting;
    await open.query('COMMIT');
    const c = await checkpoint;
    expect(BigInt(c.coveredId)).toBeGreaterThanOrEqual(BigInt(high));
    expect(c).toMatchObject({ eventCount: '2', aggregateCount: 2 });
    const result = await verifyCheckpoints(db.pool, { schema: 'outbox', checkpoints: [{ where: 'memory', checkpoint: c }], publicKey, keyId: key.keyId });
    expect(result).toEqual({ ok: true, checked: 1, problems: [] });
  } finally {
    open.release();
  }
});

test('heads as of a covered id ignore later events of the same aggregate', async () => {
  const before = await takeCheckpoint(db.pool, { schema: 'outbox', key, logger: pino({ level: 'silent' }) });
  await db.pool.query(INSERT, ['slow']);
  const then = await historyAt(db.pool, { schema: 'outbox', coveredId: BigInt(before.coveredId) });
  expect(then.root.toString('hex')).toBe(before.root);
  const now = await takeCheckpoint(db.pool, { schema: 'outbox', key, logger: pino({ level: 'silent' }) });
  expect(now.root).not.toBe(before.root);
  expect(now.eventCount).toBe('3');
});
