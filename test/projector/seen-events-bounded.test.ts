import { silentLogger } from '../../core/logger';
import { applyAndCheckpoint, type Projection } from '../../projector';
import type { DecodedMessage } from '../../projector/decode-message';
import { ensureLiveGeneration } from '../../projector/ensure-generation';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { testConfig, UserStreams, type TestEvent } from './support';

// The event_ids a projection has applied (to skip an event the relay re-published at a new offset) are
// remembered only within a window of offsets below the checkpoint: the table stays bounded however many
// events flow, and a re-published event within the window is still skipped.
const db = useTestDatabase();
const logger = silentLogger();

function decoded(topic: string, e: TestEvent, offset: number): DecodedMessage {
  return {
    ok: true,
    offset: BigInt(offset),
    item: {
      event: { ...e, occurredAt: e.occurredAt as Date, aggregateVersion: Number(e.aggregateVersion) } as never,
      schemaId: 1,
      source: { topic, partition: 0, offset: String(offset), key: null, value: null, headers: {}, timestamp: '0' },
    },
  };
}

test('the remembered event_ids stay bounded after many events; a re-published event within the window is skipped', async () => {
  const config = testConfig(db.url);
  const topic = uniqueName('user_events');
  const counted: Projection = {
    name: 'counted',
    topics: [topic],
    tables: ['counted'],
    createTables: async (client, s) => {
      await client.query(`CREATE TABLE ${s}.counted (id text PRIMARY KEY, n int NOT NULL)`);
    },
    handlers: {
      UserRegistered: async (e, ctx) => {
        await ctx.client.query(`INSERT INTO ${ctx.table('counted')} (id, n) VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = counted.n + 1`, [e.event.aggregateId]);
      },
    },
  };
  await ensureLiveGeneration(db.pool, config.projector.schema, counted, logger);
  const target = { projection: counted, outboxSchema: config.projector.schema, generation: 'live' as const, snapshotEvery: 100, logger, duplicateWindow: 500 };
  const streams = new UserStreams();
  const events = Array.from({ length: 5000 }, (_, i) => streams.event(`u${i}`, 'UserRegistered', 1, { email: 'x@x', name: 'x' }));
  const seen = async (): Promise<number> => (await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM projector_seen_events WHERE projection = 'counted'")).rows[0]!.n;

  let largest = 0;
  for (let i = 0; i < events.length; i += 100) {
    const messages = events.slice(i, i + 100).map((e, k) => decoded(topic, e, i + k));
    const r = await applyAndCheckpoint({ pool: db.pool, target, topic, partition: 0, messages, publish: async () => undefined });
    expect(r.applied).toBe(messages.length);
    largest = Math.max(largest, await seen());
  }
  // 5,000 events applied; at most the window (plus one batch) remembered at any time.
  expect(largest).toBeLessThanOrEqual(600);
  expect(await seen()).toBeLessThanOrEqual(600);

  // The relay re-publishes the last 50 events at new offsets: all skipped.
  const again = events.slice(-50).map((e, k) => decoded(topic, e, 5000 + k));
  const r = await applyAndCheckpoint({ pool: db.pool, target, topic, partition: 0, messages: again, publish: async () => undefined });
  expect(r).toMatchObject({ applied: 0, skippedDuplicates: 50, lastOffset: 5049n });
  expect((await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM counted WHERE n <> 1')).rows[0]!.n).toBe(0);
  expect((await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM counted')).rows[0]!.n).toBe(5000);
});
