import { silentLogger } from '../../core/logger';
import { startProjector, type Projection, type RunningProjector } from '../../projector';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { projectorFixture, waitFor } from './support';

// A custom projection whose batch path throws for one event: the batch is redone event by event, only
// that event is dead-lettered (handler rejection), the others are applied exactly once.
const db = useTestDatabase();
const logger = silentLogger();
let projector: RunningProjector | undefined;

afterAll(async () => {
  await projector?.stop();
});

test('a throwing handler rejects only its event; the rest of the batch is applied once', async () => {
  const { config, kafka, topic, catalog, streams, produce } = await projectorFixture(db.url, logger);
  const events = ['a', 'bad', 'c', 'd'].map((id) => streams.event(id, 'UserRegistered', 1, { email: `${id}@x`, name: id }));
  await produce(events);

  let batchCalls = 0;
  const insert: NonNullable<Projection['handlers'][string]> = async (e, ctx) => {
    if (e.event.aggregateId === 'bad') throw new Error('cannot project user bad');
    await ctx.client.query(`INSERT INTO ${ctx.table('things')} (id) VALUES ($1)`, [e.event.aggregateId]);
  };
  const things: Projection = {
    name: 'things',
    topics: [topic],
    tables: ['things'],
    createTables: async (client, s) => {
      await client.query(`CREATE TABLE ${s}.things (id text PRIMARY KEY)`);
    },
    handlers: { UserRegistered: insert },
    async applyBatch(batch, ctx) {
      batchCalls++;
      for (const e of batch) await insert(e, ctx);
      return [];
    },
  };
  projector = await startProjector({ config, logger, pool: db.pool, catalog, projections: [things], groupIdPrefix: uniqueName('g'), sessionTimeoutMs: 6000 });
  await waitFor('things applied', async () => (await db.pool.query('SELECT id FROM things')).rowCount === 3);
  const dlq = await readTopics(kafka, [`${topic}.dlq`], { count: 1, timeoutMs: 30_000 });
  expect(dlq).toHaveLength(1);
  expect(dlq[0]!.message.headers?.['__connect.errors.exception.class.name']?.toString()).toBe('kafka_outbox.projector.HandlerRejected');
  expect(dlq[0]!.message.headers?.['__connect.errors.exception.message']?.toString()).toContain('cannot project user bad');
  expect(dlq[0]!.message.headers?.['__connect.errors.offset']?.toString()).toBe('1');
  expect((await db.pool.query('SELECT id FROM things ORDER BY id')).rows).toEqual([{ id: 'a' }, { id: 'c' }, { id: 'd' }]);
  expect(batchCalls).toBeGreaterThanOrEqual(1);
  const recorded = await db.pool.query('SELECT projection, kind, "offset"::int AS offset FROM projector_dead_letters');
  expect(recorded.rows).toEqual([{ projection: 'things', kind: 'handler_rejected', offset: 1 }]);
});
