import { silentLogger } from '../../core/logger';
import { builtInProjections, projectionStatus, readProjectionLag, rebuildProjection, startProjector, type RunningProjector } from '../../projector';
import { createUsersProjection } from '../../examples/users-service/projections/users';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { expectedUsers, produceEvents, projectorFixture, waitFor, type TestEvent } from './support';

// A topic written as the relay writes it by default: every batch in a Kafka transaction, so commit (and
// abort) markers occupy offsets between the records. Caught up must mean "the consumer's position reached
// the end of the partition", never "last applied offset + 1 = high watermark": lag reaches 0 (in the
// projector, from the database + Kafka, in `outbox status`), a rebuild finishes and swaps, and records of
// an aborted transaction are never applied (read_committed).
const db = useTestDatabase();
const quiet = useTestDatabase();
const logger = silentLogger();
let projector: RunningProjector | undefined;

afterAll(async () => {
  await projector?.stop();
});

test('on a transactionally written topic, lag reaches 0 and a rebuild catches up and swaps; aborted records are never applied', async () => {
  const { config, kafka, topic, catalog, encoder, streams } = await projectorFixture(db.url, logger, { partitions: 2 });
  const producer = kafka.producer({ transactionalId: uniqueName('tx'), idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const committed: TestEvent[] = [];
  const inTransaction = async (events: TestEvent[], outcome: 'commit' | 'abort'): Promise<void> => {
    const tx = await producer.transaction();
    await produceEvents(tx, encoder, topic, events);
    await (outcome === 'commit' ? tx.commit() : tx.abort());
    if (outcome === 'commit') committed.push(...events);
  };
  try {
    // Many small transactions (a marker after every few records), one aborted in the middle.
    for (let i = 0; i < 20; i++) await inTransaction(streams.life(`u${i}`, 5), 'commit');
    await inTransaction(streams.life('ghost', 4), 'abort');
    for (let i = 20; i < 30; i++) await inTransaction(streams.life(`u${i}`, 5), 'commit');

    projector = await startProjector({
      config,
      logger,
      pool: db.pool,
      catalog,
      projections: ({ catalog: cat }) => builtInProjections(config, { catalog: cat, topics: [topic] }),
      groupIdPrefix: uniqueName('g'),
      sessionTimeoutMs: 6000,
    });
    const applied = async (): Promise<number> => (await db.pool.query<{ n: number }>('SELECT coalesce(sum(events_applied), 0)::int AS n FROM users')).rows[0]!.n;
    await waitFor('users applied', async () => (await applied()) === committed.length, 90_000);

    // Lag 0 once caught up: in the projector (the consumer's position), from the checkpoints + the topic's
    // last stable offsets, and as `outbox status` shows it.
    await waitFor('in-process lag 0 on both partitions of both projections', async () => {
      const lags = projector!.lag().filter((l) => l.topic === topic);
      return lags.length === 4 && lags.every((l) => l.lag === 0);
    });
    await waitFor('lag 0 from the checkpoints', async () => {
      const lags = (await readProjectionLag({ config, pool: db.pool, logger, kafka })).filter((l) => l.topic === topic);
      return lags.length === 4 && lags.every((l) => l.lag === 0);
    });
    const status = await projectionStatus({ config, pool: db.pool, logger });
    expect(status.map((s) => [s.name, s.lag])).toEqual(
      expect.arrayContaining([
        ['users', 0],
        ['audit_log', 0],
      ]),
    );

    // A rebuild over the same topic: catches up (past the markers) and swaps, while transactions keep coming.
    const more = (async () => {
      for (let i = 30; i < 40; i++) await inTransaction(streams.life(`u${i}`, 3), 'commit');
    })();
    const result = await rebuildProjection({
      config,
      logger,
      projection: createUsersProjection({ topics: [topic] }),
      pool: db.pool,
      catalog,
      groupIdPrefix: uniqueName('r'),
      sessionTimeoutMs: 6000,
      onProgress: () => undefined,
      timeoutMs: 120_000,
    });
    await more;
    expect(result).toMatchObject({ projection: 'users', generation: 2, previousGeneration: 1, swapped: true });

    // The swapped-in generation holds every committed event and nothing of the aborted transaction.
    await waitFor('live caught up after the swap', async () => (await applied()) === committed.length, 60_000);
    const expected = expectedUsers(committed);
    const { rows } = await db.pool.query<Record<string, unknown> & { user_id: string }>(
      'SELECT user_id, email, email_verified, first_name, last_name, active, version::int AS version, events_applied FROM users',
    );
    expect(rows.map((r) => r.user_id).sort()).toEqual([...expected.keys()].sort());
    expect(rows.filter(({ user_id, ...actual }) => JSON.stringify(actual) !== JSON.stringify(expected.get(user_id)))).toEqual([]);
    expect((await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE aggregate_id = 'ghost'`)).rows[0]!.n).toBe(0);
    await waitFor('lag 0 again after the swap', async () => {
      const lags = (await readProjectionLag({ config, pool: db.pool, logger, kafka })).filter((l) => l.topic === topic);
      return lags.length === 4 && lags.every((l) => l.lag === 0);
    });
  } finally {
    await producer.disconnect();
  }
}, 300_000);

test('a rebuild over a quiet, transactionally written topic finishes and swaps (no live projector running)', async () => {
  const { config, kafka, topic, catalog, encoder, streams } = await projectorFixture(quiet.url, logger, { partitions: 2 });
  const producer = kafka.producer({ transactionalId: uniqueName('tx'), idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const events: TestEvent[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      const tx = await producer.transaction();
      const life = streams.life(`q${i}`, 4);
      await produceEvents(tx, encoder, topic, life);
      await tx.commit();
      events.push(...life);
    }
  } finally {
    await producer.disconnect();
  }
  const result = await rebuildProjection({
    config,
    logger,
    projection: createUsersProjection({ topics: [topic] }),
    pool: quiet.pool,
    catalog,
    groupIdPrefix: uniqueName('r'),
    sessionTimeoutMs: 6000,
    onProgress: () => undefined,
    timeoutMs: 90_000,
  });
  expect(result).toMatchObject({ projection: 'users', generation: 2, previousGeneration: 1, swapped: true });
  const { rows } = await quiet.pool.query<{ n: number }>('SELECT coalesce(sum(events_applied), 0)::int AS n FROM users');
  expect(rows[0]!.n).toBe(events.length);
  // The shadow's checkpoints passed the last commit markers: nothing left to read.
  const lags = await readProjectionLag({ config, pool: quiet.pool, logger, kafka });
  expect(lags.filter((l) => l.projection === 'users').map((l) => l.lag)).toEqual([0, 0]);
}, 180_000);
