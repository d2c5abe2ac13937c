import pg from 'pg';
import { silentLogger } from '../../core/logger';
import { applyAndCheckpoint, generationSchema, startProjector, type Projection, type RunningProjector } from '../../projector';
import type { DecodedMessage } from '../../projector/decode-message';
import { ensureLiveGeneration } from '../../projector/ensure-generation';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { projectorFixture, testConfig, UserStreams, waitFor } from './support';

// The database checkpoint is the truth about what a projection has applied. When Kafka's committed
// offsets are ahead of it (the database was restored from a backup), the projector must resume from
// the checkpoint, never from Kafka's offset, even when reading the checkpoint is slow.
const db = useTestDatabase();
const logger = silentLogger();
let projector: RunningProjector | undefined;
let holder: pg.PoolClient | undefined;

afterAll(async () => {
  await holder?.query('ROLLBACK').catch(() => undefined);
  holder?.release();
  await projector?.stop();
});

function thingsProjection(topic: string): Projection {
  return {
    name: 'things',
    topics: [topic],
    tables: ['things'],
    createTables: async (client, s) => {
      await client.query(`CREATE TABLE ${s}.things (id text PRIMARY KEY, kafka_offset bigint NOT NULL)`);
    },
    handlers: {
      UserRegistered: async (e, ctx) => {
        await ctx.client.query(`INSERT INTO ${ctx.table('things')} (id, kafka_offset) VALUES ($1, $2)`, [e.event.aggregateId, e.source.offset]);
      },
    },
  };
}

test("Kafka's committed offset ahead of the database checkpoint: the projector resumes from the checkpoint and no event is missing", async () => {
  const { config, kafka, topic, catalog, streams, produce } = await projectorFixture(db.url, logger);
  const ids = Array.from({ length: 13 }, (_, i) => `u${String(i).padStart(2, '0')}`);
  const events = ids.map((id) => streams.event(id, 'UserRegistered', 1, { email: `${id}@x`, name: id }));
  const groupIdPrefix = uniqueName('g');
  const things = thingsProjection(topic);

  // Offsets 0..4 applied: the database checkpoint is 4.
  await produce(events.slice(0, 5));
  projector = await startProjector({ config, logger, catalog, projections: [things], groupIdPrefix, sessionTimeoutMs: 6000 });
  await waitFor('offsets 0..4 applied', async () => (await db.pool.query("SELECT 1 FROM projector_offsets WHERE projection = 'things' AND last_offset = 4")).rowCount === 1);
  await projector.stop();
  projector = undefined;

  // Offsets 5..12 written while the projector is down; Kafka's committed offset for the group is moved
  // to 10, as if the database had been restored to an older backup than Kafka's offsets.
  await produce(events.slice(5));
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.setOffsets({ groupId: `${groupIdPrefix}.things`, topic, partitions: [{ partition: 0, offset: '10' }] });
  } finally {
    await admin.disconnect();
  }

  // Reading the checkpoint is slow at start-up: another session holds the checkpoint table.
  holder = await db.pool.connect();
  await holder.query('BEGIN');
  await holder.query('LOCK TABLE projector_offsets IN ACCESS EXCLUSIVE MODE');
  const starting = startProjector({ config, logger, catalog, projections: [things], groupIdPrefix, sessionTimeoutMs: 6000 });
  starting.catch(() => undefined);
  await waitFor('the projector waiting on the checkpoint table', async () => {
    const { rows } = await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE '%projector_offsets%'",
    );
    return rows[0]!.n > 0;
  });
  // Time enough for a fetch from Kafka's committed offset to arrive and be handed to the projection.
  await new Promise((r) => setTimeout(r, 3000));
  await holder.query('COMMIT');
  holder.release();
  holder = undefined;
  projector = await starting;

  const { rows: live } = await db.pool.query<{ pg_schema: string }>("SELECT pg_schema FROM projector_generations WHERE projection = 'things' AND status = 'live'");
  const table = `"${live[0]!.pg_schema}".things`;
  await waitFor(
    'checkpoint at offset 12',
    async () => (await db.pool.query("SELECT 1 FROM projector_offsets WHERE projection = 'things' AND last_offset = 12")).rowCount === 1,
    60_000,
  );
  const { rows } = await db.pool.query<{ id: string; kafka_offset: string }>(`SELECT id, kafka_offset FROM ${table} ORDER BY kafka_offset`);
  expect(rows.map((r) => r.id)).toEqual(ids);
  expect(rows.map((r) => Number(r.kafka_offset))).toEqual(ids.map((_, i) => i));
});

test('a batch that starts past the checkpoint + 1 is refused: nothing applied, the checkpoint unchanged, the offset to seek to returned', async () => {
  const config = testConfig(db.url);
  const topic = uniqueName('user_events');
  const things: Projection = { ...thingsProjection(topic), name: 'gapped', tables: ['gapped_things'] };
  things.createTables = async (client, s) => {
    await client.query(`CREATE TABLE ${s}.gapped_things (id text PRIMARY KEY, kafka_offset bigint NOT NULL)`);
  };
  things.handlers = {
    UserRegistered: async (e, ctx) => {
      await ctx.client.query(`INSERT INTO ${ctx.table('gapped_things')} (id, kafka_offset) VALUES ($1, $2)`, [e.event.aggregateId, e.source.offset]);
    },
  };
  await ensureLiveGeneration(db.pool, config.projector.schema, things, logger);
  await db.pool.query("INSERT INTO projector_offsets (projection, generation, topic, partition, last_offset) VALUES ('gapped', 1, $1, 0, 4)", [topic]);
  const streams = new UserStreams();
  const messages: DecodedMessage[] = [10, 11, 12].map((offset) => {
    const e = streams.event(`g${offset}`, 'UserRegistered', 1, { email: 'x', name: 'x' });
    return {
      ok: true,
      item: {
        event: { ...e, occurredAt: e.occurredAt as Date, aggregateVersion: Number(e.aggregateVersion) } as never,
        schemaId: 1,
        source: { topic, partition: 0, offset: String(offset), key: null, value: null, headers: {}, timestamp: '0' },
      },
      offset: BigInt(offset),
    } as DecodedMessage;
  });
  const target = { projection: things, outboxSchema: config.projector.schema, generation: 'live' as const, snapshotEvery: 100, logger };

  const refused = await applyAndCheckpoint({ pool: db.pool, target, topic, partition: 0, messages, publish: async () => undefined, readFrom: 10n });
  expect(refused.applied).toBe(0);
  expect(refused.gap).toEqual({ expected: 5n, first: 10n });
  expect((await db.pool.query("SELECT last_offset::int AS o FROM projector_offsets WHERE projection = 'gapped'")).rows).toEqual([{ o: 4 }]);
  expect((await db.pool.query(`SELECT count(*)::int AS n FROM "${generationSchema(config.projector.schema, 'gapped', 1)}".gapped_things`)).rows[0]).toEqual({ n: 0 });

  // Read from the checkpoint + 1 and still starting at 10: offsets 5..9 are not in the log (transaction
  // markers, compaction), the batch is applied.
  const accepted = await applyAndCheckpoint({ pool: db.pool, target, topic, partition: 0, messages, publish: async () => undefined, readFrom: 5n });
  expect(accepted.gap).toBeUndefined();
  expect(accepted.applied).toBe(3);
  expect((await db.pool.query("SELECT last_offset::int AS o FROM projector_offsets WHERE projection = 'gapped'")).rows).toEqual([{ o: 12 }]);
});
