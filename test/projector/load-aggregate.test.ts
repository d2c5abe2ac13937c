import { Registry } from 'prom-client';
import { silentLogger } from '../../core/logger';
import { builtInProjections, loadAggregate, projectionStatus, readProjectionLag, startProjector, type RunningProjector } from '../../projector';
import { userReducer, type UserState } from '../../examples/users-service/projections/users';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { projectorFixture, waitFor } from './support';

// Snapshots every N events; loadAggregate = latest snapshot of this reducer version + the events after
// it; a snapshot of another reducer version is ignored. Lag per projection and partition; metrics.
const db = useTestDatabase();
const logger = silentLogger();
let projector: RunningProjector | undefined;

afterAll(async () => {
  await projector?.stop();
});

test('snapshots every N events, loadAggregate from snapshot equals full replay, other reducer versions ignored; lag and metrics', async () => {
  const { config, topic, catalog, streams, produce } = await projectorFixture(db.url, logger, { partitions: 2, env: { OUTBOX_SNAPSHOT_EVERY: '100' } });
  const events = [...streams.life('big', 250), ...streams.life('small', 5)];
  await produce(events);

  const registry = new Registry();
  projector = await startProjector({
    config,
    logger,
    pool: db.pool,
    catalog,
    projections: ({ catalog: cat, metrics }) => builtInProjections(config, { catalog: cat, topics: [topic], ...(metrics ? { metrics } : {}) }),
    groupIdPrefix: uniqueName('g'),
    sessionTimeoutMs: 6000,
    metrics: { registry },
  });
  await waitFor('applied', async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]!.n === 255);
  await waitFor('users applied', async () => (await db.pool.query<{ n: number }>('SELECT coalesce(sum(events_applied),0)::int AS n FROM users')).rows[0]!.n === 255);

  const snaps = await db.pool.query<{ aggregate_id: string; aggregate_version: string; reducer_version: number; schema_version: number }>(
    'SELECT aggregate_id, aggregate_version, reducer_version, schema_version FROM projector_snapshots ORDER BY aggregate_id, aggregate_version',
  );
  expect(snaps.rows).toEqual([
    { aggregate_id: 'big', aggregate_version: '100', reducer_version: 1, schema_version: 1 },
    { aggregate_id: 'big', aggregate_version: '200', reducer_version: 1, schema_version: 1 },
  ]);

  const fromSnapshot = await loadAggregate<UserState>(db.pool, 'user', 'big');
  expect(fromSnapshot).toMatchObject({ version: 250, snapshotVersion: 200, eventsReplayed: 50 });
  const replay = await loadAggregate<UserState>(db.pool, 'user', 'big', { useSnapshots: false });
  expect(replay).toMatchObject({ version: 250, snapshotVersion: null, eventsReplayed: 250 });
  expect(fromSnapshot.state).toEqual(replay.state);
  const row = await db.pool.query<{ email: string; version: string }>(`SELECT email, version FROM users WHERE user_id = 'big'`);
  expect(fromSnapshot.state?.email).toBe(row.rows[0]!.email);

  // A reducer of another version ignores the stored snapshots and rebuilds the state from the events.
  const v2 = { ...userReducer, version: 2 };
  const rebuilt = await loadAggregate<UserState>(db.pool, 'user', 'big', { reducer: v2 });
  expect(rebuilt).toMatchObject({ version: 250, snapshotVersion: null, eventsReplayed: 250 });
  expect(rebuilt.state).toEqual(replay.state);

  // Lag: per projection and partition, 0 when caught up (in-process and from the database + Kafka).
  await waitFor('lag reported', async () => projector!.lag().length >= 2);
  expect(projector.lag().every((l) => l.lag === 0)).toBe(true);
  const lags = await readProjectionLag({ config, pool: db.pool, logger });
  expect(lags.map((l) => l.projection).sort()).toEqual(expect.arrayContaining(['audit_log', 'users']));
  expect(lags.every((l) => l.lag === 0)).toBe(true);
  const status = await projectionStatus({ config, pool: db.pool, logger });
  expect(status.map((s) => s.name)).toEqual(['audit_log', 'users']);
  expect(status.every((s) => s.lag === 0)).toBe(true);

  const text = await registry.metrics();
  expect(text).toMatch(/outbox_projector_applied_events_total\{projection="audit_log"\} 255/);
  expect(text).toMatch(/outbox_projector_consumer_lag\{projection="users",topic="[^"]+",partition="\d"\} 0/);
});
