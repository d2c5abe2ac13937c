import { Registry } from 'prom-client';
import { silentLogger } from '../../core/logger';
import { builtInProjections, rebuildProjection, startProjector, type RebuildProgress, type RunningProjector } from '../../projector';
import { createUsersProjection } from '../../examples/users-service/projections/users';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { expectedUsers, produceEvents, projectorFixture, type TestEvent, waitFor } from './support';

// Rebuilding `users` from offset 0 while events keep flowing and readers keep querying: no read fails,
// and the result equals the live projection (the fold of every event). Then a dry run compares.
const db = useTestDatabase({ poolSize: 24 });
const logger = silentLogger();
let projector: RunningProjector | undefined;

afterAll(async () => {
  await projector?.stop();
});

test('rebuild users from offset 0 under load: readers never fail, swap is atomic, result equals live; dry run compares equal', async () => {
  const { config, kafka, topic, catalog, encoder, streams } = await projectorFixture(db.url, logger, { partitions: 3 });
  const events: TestEvent[] = [];
  for (let i = 0; i < 100; i++) events.push(...streams.life(`u${i}`, 50));
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await produceEvents(producer, encoder, topic, events);

  projector = await startProjector({
    config,
    logger,
    pool: db.pool,
    catalog,
    projections: ({ catalog: cat }) => builtInProjections(config, { catalog: cat, topics: [topic] }),
    groupIdPrefix: uniqueName('g'),
    sessionTimeoutMs: 6000,
  });
  await waitFor(
    'live caught up',
    async () => (await db.pool.query<{ n: number }>('SELECT coalesce(sum(events_applied), 0)::int AS n FROM users')).rows[0]!.n === events.length,
    90_000,
  );

  // Events keep flowing...
  let flowing = true;
  let nextUser = 100;
  const flow = (async () => {
    while (flowing) {
      const batch: TestEvent[] = [];
      for (let k = 0; k < 20; k++) {
        const id = `u${Math.floor(Math.random() * nextUser)}`;
        batch.push(streams.event(id, 'UserRenamed', 2, { first_name: `F${events.length + k}`, last_name: 'X' }));
      }
      batch.push(...streams.life(`u${nextUser++}`, 3));
      events.push(...batch);
      await produceEvents(producer, encoder, topic, batch);
      await new Promise((r) => setTimeout(r, 30));
    }
  })();

  // ...and readers keep querying the view.
  let reading = true;
  let reads = 0;
  const failures: string[] = [];
  const readers = Array.from({ length: 3 }, (_, r) =>
    (async () => {
      while (reading) {
        try {
          if (r === 0) await db.pool.query('SELECT count(*), sum(version) FROM users');
          else await db.pool.query('SELECT * FROM users WHERE user_id = $1', [`u${Math.floor(Math.random() * 100)}`]);
          reads++;
        } catch (err) {
          failures.push(String(err));
          // Yield to the event loop: a pool that fails at once (ended after a failed test) must not spin.
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    })(),
  );

  // However the rebuild ends, the writer and the readers stop (and with them their use of the pool).
  const stopLoad = async (): Promise<void> => {
    flowing = false;
    reading = false;
    await Promise.allSettled([flow, ...readers]);
  };
  const progress: RebuildProgress[] = [];
  const registry = new Registry();
  const result = await rebuildProjection({
    config,
    logger,
    projection: createUsersProjection({ topics: [topic] }),
    pool: db.pool,
    catalog,
    groupIdPrefix: uniqueName('r'),
    sessionTimeoutMs: 6000,
    onProgress: (p) => progress.push(p),
    progressIntervalMs: 200,
    timeoutMs: 120_000,
    metrics: { registry },
  }).catch(async (err: unknown) => {
    await stopLoad();
    throw err;
  });
  expect(result).toMatchObject({ projection: 'users', generation: 2, previousGeneration: 1, swapped: true });
  expect(result.events).toBeGreaterThanOrEqual(5000);
  // The rebuild rate as a counter (rate() of it), beside the progress gauges.
  const counted = (await registry.getSingleMetricAsString('outbox_projector_rebuild_events_total')).match(/projection="users"} (\d+)/)?.[1];
  expect(Number(counted)).toBeGreaterThanOrEqual(5000);
  // Keep flowing and reading a little after the swap: live now applies into generation 2.
  await new Promise((r) => setTimeout(r, 1500));
  flowing = false;
  await flow;
  reading = false;
  await Promise.all(readers);
  await producer.disconnect();

  expect(failures).toEqual([]);
  expect(reads).toBeGreaterThan(100);
  expect(progress.some((p) => p.phase === 'catching_up' && p.eventsPerSecond > 0)).toBe(true);
  expect(progress[progress.length - 1]).toMatchObject({ phase: 'done', ratio: 1, etaSeconds: 0 });

  const live = await db.pool.query<{ live_generation: number }>(`SELECT live_generation FROM projector_projections WHERE projection = 'users'`);
  expect(live.rows[0]!.live_generation).toBe(2);
  const oldSchema = await db.pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'prj_users_g1'`);
  expect(oldSchema.rowCount).toBe(0);

  // The result equals the fold of every event produced (what the live projection must hold).
  const expected = expectedUsers(events);
  await waitFor(
    'live caught up after the swap',
    async () => (await db.pool.query<{ n: number }>('SELECT coalesce(sum(events_applied), 0)::int AS n FROM users')).rows[0]!.n === events.length,
    60_000,
  );
  const { rows } = await db.pool.query<Record<string, unknown> & { user_id: string }>(
    'SELECT user_id, email, email_verified, first_name, last_name, active, version::int AS version, events_applied FROM users',
  );
  expect(rows).toHaveLength(expected.size);
  const wrong = rows.filter(({ user_id, ...actual }) => JSON.stringify(actual) !== JSON.stringify(expected.get(user_id)));
  expect(wrong).toEqual([]);
  const dlq = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM projector_dead_letters');
  expect(dlq.rows[0]!.n).toBe(0);

  // Dry run (quiet topic): shadow and live compare equal; nothing swapped, shadow dropped.
  const dry = await rebuildProjection({
    config,
    logger,
    projection: createUsersProjection({ topics: [topic] }),
    pool: db.pool,
    catalog,
    groupIdPrefix: uniqueName('d'),
    sessionTimeoutMs: 6000,
    dryRun: true,
    timeoutMs: 120_000,
  });
  expect(dry.swapped).toBe(false);
  expect(dry.comparison).toMatchObject({ equal: true, offsetsAligned: true, tables: [{ table: 'users', liveRows: expected.size, shadowRows: expected.size, equal: true }] });
  expect((await db.pool.query<{ live_generation: number }>(`SELECT live_generation FROM projector_projections WHERE projection = 'users'`)).rows[0]!.live_generation).toBe(2);
  expect((await db.pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'prj_users_g3'`)).rowCount).toBe(0);
}, 300_000);
