import pg from 'pg';
import { silentLogger } from '../../core/logger';
import { startProjector, type RunningProjector } from '../../projector';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { projectorFixture, thingsProjection, waitFor } from './support';

// A lock the projector cannot get within its lock_timeout (SQLSTATE 55P03) is PostgreSQL being busy,
// not a bad event: the batch is retried until the lock is free, nothing is dead-lettered.
const db = useTestDatabase();
const logger = silentLogger();
let projector: RunningProjector | undefined;
let projectorPool: pg.Pool | undefined;

afterAll(async () => {
  await projector?.stop();
  await projectorPool?.end();
});

test('a lock timeout while applying is retried: every event reaches the read model, none is dead-lettered', async () => {
  const { config, kafka, topic, catalog, streams, produce } = await projectorFixture(db.url, logger);

  const things = thingsProjection(topic);
  projectorPool = new pg.Pool({ connectionString: db.url, max: 4, options: '-c lock_timeout=300' });
  projectorPool.on('error', () => undefined);
  projector = await startProjector({ config, logger, pool: projectorPool, catalog, projections: [things], groupIdPrefix: uniqueName('g'), sessionTimeoutMs: 6000 });
  const { rows } = await db.pool.query<{ pg_schema: string }>("SELECT pg_schema FROM projector_generations WHERE projection = 'things' AND status = 'live'");
  const table = `"${rows[0]!.pg_schema}".things`;

  // Another session holds the read model's table for 3 s, ten times the projector's lock_timeout.
  const holder = await db.pool.connect();
  try {
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    await produce(['a', 'b', 'c'].map((id) => streams.event(id, 'UserRegistered', 1, { email: `${id}@x`, name: id })));
    await new Promise((r) => setTimeout(r, 3000));
    await holder.query('COMMIT');
  } finally {
    holder.release();
  }

  await waitFor('all three events applied', async () => (await db.pool.query(`SELECT id FROM ${table}`)).rowCount === 3, 30_000);
  expect((await db.pool.query(`SELECT id FROM ${table} ORDER BY id`)).rows).toEqual([{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
  expect((await db.pool.query('SELECT count(*)::int AS n FROM projector_dead_letters')).rows[0]).toEqual({ n: 0 });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const dlq = await admin.fetchTopicOffsets(`${topic}.dlq`);
    expect(dlq.reduce((n, p) => n + Number(p.high), 0)).toBe(0);
  } finally {
    await admin.disconnect();
  }
});
