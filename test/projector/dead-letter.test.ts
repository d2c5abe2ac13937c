import { silentLogger } from '../../core/logger';
import { builtInProjections, startProjector, type RunningProjector } from '../../projector';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { produceEvents, projectorFixture, waitFor } from './support';

// Bad messages produced straight to the topic land in <topic>.dlq exactly once (with the original bytes
// and Kafka Connect style error headers) while the good messages around them are applied; a broken
// hash-chain link is recorded in audit_log, not stored as fine.
const db = useTestDatabase();
const logger = silentLogger();
let projectors: RunningProjector[] = [];

afterAll(async () => {
  await Promise.all(projectors.map((p) => p.stop()));
});

test('wrong magic byte, unknown schema id, truncated body and a rejected event each land in the DLQ once; the rest is applied', async () => {
  const { config, kafka, topic, catalog, encoder, streams } = await projectorFixture(db.url, logger);

  const a = streams.life('a', 3);
  const b = streams.life('b', 1);
  const aMore = [streams.event('a', 'UserRenamed', 2, { first_name: 'Ann', last_name: 'Lee' }), streams.event('a', 'UserEmailChanged', 1, { email: 'ann@example.com' })];
  const c = streams.life('c', 2);
  const orphan = streams.event('d', 'UserEmailChanged', 2, { new_email: 'd@example.com', verified: true }); // users rejects: unknown user
  const tampered = streams.event('e', 'UserRegistered', 1, { email: 'e@example.com', name: 'E E' });
  tampered.hash = Buffer.alloc(32, 7);

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const good = async (events: typeof a): Promise<void> => produceEvents(producer, encoder, topic, events);
  const encodedB = await encoder.encode(b[0]!);
  if (!encodedB.ok) throw new Error(encodedB.reason);
  const badMagic = Buffer.from(encodedB.value);
  badMagic[0] = 1;
  const unknownId = Buffer.from(encodedB.value);
  unknownId.writeInt32BE(2_000_000_000, 1);
  const truncated = encodedB.value.subarray(0, Math.floor(encodedB.value.length / 2));

  await good(a);
  await producer.send({ topic, acks: -1, messages: [{ key: 'x1', value: badMagic }] });
  await good(aMore);
  await producer.send({ topic, acks: -1, messages: [{ key: 'x2', value: unknownId }] });
  await good(c);
  await producer.send({ topic, acks: -1, messages: [{ key: 'x3', value: truncated }] });
  await good([orphan, tampered]);
  await producer.disconnect();

  const start = (prefix: string): Promise<RunningProjector> =>
    startProjector({
      config,
      logger,
      pool: db.pool,
      catalog,
      projections: ({ catalog: cat }) => builtInProjections(config, { catalog: cat, topics: [topic] }),
      groupIdPrefix: prefix,
      sessionTimeoutMs: 6000,
    });
  projectors.push(await start(uniqueName('g')));

  // All good events applied: users a (5 events), c (2); audit_log has every decodable event.
  await waitFor('audit_log and users', async () => {
    const n = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log');
    const u = await db.pool.query<{ version: string }>(`SELECT version FROM users WHERE user_id = 'a'`);
    return n.rows[0]!.n === 3 + 2 + 2 + 2 && u.rows[0]?.version === '5';
  });
  const users = await db.pool.query('SELECT user_id, email, first_name, last_name, version::int, events_applied FROM users ORDER BY user_id');
  expect(users.rows).toEqual([
    { user_id: 'a', email: 'ann@example.com', first_name: 'Ann', last_name: 'Lee', version: 5, events_applied: 5 },
    { user_id: 'c', email: expect.any(String), first_name: expect.any(String), last_name: expect.any(String), version: 2, events_applied: 2 },
    { user_id: 'e', email: 'e@example.com', first_name: 'E', last_name: 'E', version: 1, events_applied: 1 },
  ]);
  const chain = await db.pool.query<{ aggregate_id: string; chain_status: string }>('SELECT aggregate_id, chain_status FROM audit_log ORDER BY kafka_offset');
  expect(chain.rows.filter((r) => r.chain_status !== 'ok')).toEqual([{ aggregate_id: 'e', chain_status: 'broken' }]);

  const dlqTopic = `${topic}.dlq`;
  const dlq = await readTopics(kafka, [dlqTopic], { count: 4, timeoutMs: 30_000 });
  const kinds = dlq.map((m) => m.message.headers?.['__connect.errors.exception.class.name']?.toString()).sort();
  expect(kinds).toEqual([
    'kafka_outbox.projector.BadMagicByte',
    'kafka_outbox.projector.HandlerRejected',
    'kafka_outbox.projector.UndecodableMessage',
    'kafka_outbox.projector.UnknownSchemaId',
  ]);
  for (const m of dlq) {
    expect(m.message.headers?.['__connect.errors.topic']?.toString()).toBe(topic);
    expect(m.message.headers?.['__connect.errors.partition']?.toString()).toBe('0');
    expect(m.message.headers?.['__connect.errors.exception.message']?.toString()).toMatch(/\S/);
  }
  const byClass = (c: string): Buffer =>
    dlq.find((m) => m.message.headers?.['__connect.errors.exception.class.name']?.toString() === `kafka_outbox.projector.${c}`)!.message.value!;
  expect(byClass('BadMagicByte').equals(badMagic)).toBe(true);
  expect(byClass('UnknownSchemaId').equals(unknownId)).toBe(true);
  expect(byClass('UndecodableMessage').equals(truncated)).toBe(true);

  // A second projector in fresh consumer groups re-reads the topic from the beginning: the database
  // checkpoint skips everything, nothing is applied or dead-lettered twice.
  await Promise.all(projectors.map((p) => p.stop()));
  projectors = [await start(uniqueName('g2'))];
  // Evidence that the second projector consumed past everything above: a sentinel user produced after
  // it started is applied by both projections (audit_log and users).
  const sentinel = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await sentinel.connect();
  await produceEvents(sentinel, encoder, topic, streams.life('sentinel', 1));
  await sentinel.disconnect();
  await waitFor('the second projector applied the sentinel', async () => {
    const n = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE aggregate_id = 'sentinel'`);
    const u = await db.pool.query(`SELECT 1 FROM users WHERE user_id = 'sentinel'`);
    return n.rows[0]!.n === 1 && u.rowCount === 1;
  });
  const again = await readTopics(kafka, [dlqTopic], { timeoutMs: 30_000 });
  expect(again).toHaveLength(4);
  const recorded = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM projector_dead_letters');
  expect(recorded.rows[0]!.n).toBe(4);
  expect((await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE aggregate_id <> 'sentinel'`)).rows[0]!.n).toBe(9);
  expect((await db.pool.query<{ n: number }>(`SELECT events_applied AS n FROM users WHERE user_id = 'a'`)).rows[0]!.n).toBe(5);
});
