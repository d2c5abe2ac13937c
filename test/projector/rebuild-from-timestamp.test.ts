import type { Producer } from 'kafkajs';
import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { liveLockKey } from '../../projector/ensure-generation';
import { rebuildProjection, startProjector, type RebuildResult, type RunningProjector } from '../../projector';
import type { EventEncoder } from '../../schemas/encode-event';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { createTopic, testCatalog, testConfig, testEncoder, thingsProjection, UserStreams, waitFor, type TestEvent } from './support';

// `rebuild --from-timestamp` where one partition has no event after the timestamp: the rebuild still
// finishes (that partition's shadow checkpoint starts at the timestamp's offset - 1), and the live
// projector keeps applying while the rebuild waits for its shadow to catch up.
const db = useTestDatabase({ poolSize: 8 });
const logger = silentLogger();
let projector: RunningProjector | undefined;
let producer: Producer | undefined;

afterAll(async () => {
  await projector?.stop();
  await producer?.disconnect();
});

async function produceTo(encoder: EventEncoder, topic: string, partition: number, events: TestEvent[]): Promise<void> {
  const messages = [];
  for (const e of events) {
    const r = await encoder.encode(e);
    if (!r.ok) throw new Error(r.reason);
    messages.push({ partition, key: e.aggregateId, value: r.value, headers: { event_id: e.eventId } });
  }
  await producer!.send({ topic, acks: -1, messages });
}

test('rebuild from a timestamp with a partition quiet since then finishes, and live keeps applying during it', async () => {
  const config = testConfig(db.url);
  const kafka = createKafka(config.kafka, logger);
  const topic = uniqueName('user_events');
  await createTopic(kafka, topic, 2);
  const catalog = testCatalog(uniqueName('ns'));
  const encoder = await testEncoder(config, catalog, logger);
  const streams = new UserStreams();
  producer = kafka.producer();
  await producer.connect();
  let n = 0;
  const registrations = (count: number): TestEvent[] => Array.from({ length: count }, () => streams.event(`u${n++}`, 'UserRegistered', 1, { email: 'x@x', name: 'x' }));

  const things = thingsProjection(topic);
  const count = async (): Promise<number> => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM things')).rows[0]!.n;

  // Before the timestamp: both partitions. After it: partition 0 only.
  await produceTo(encoder, topic, 0, registrations(10));
  await produceTo(encoder, topic, 1, registrations(10));
  await new Promise((r) => setTimeout(r, 50));
  const since = Date.now();
  await new Promise((r) => setTimeout(r, 50));
  // Enough events after the timestamp that the shadow spends a while catching up: the probes below must
  // find live's lock free all that time.
  const after = registrations(300);
  for (let i = 0; i < after.length; i += 100) await produceTo(encoder, topic, 0, after.slice(i, i + 100));

  projector = await startProjector({ config, logger, pool: db.pool, catalog, projections: [things], groupIdPrefix: uniqueName('g'), sessionTimeoutMs: 6000 });
  await waitFor('live caught up', async () => (await count()) === 20 + after.length);

  // Events keep flowing into partition 0 during the rebuild, and a prober checks that live's lock stays available.
  let flowing = true;
  const flowed: string[] = [];
  const flow = (async () => {
    while (flowing) {
      const batch = registrations(1);
      await produceTo(encoder, topic, 0, batch);
      flowed.push(batch[0]!.aggregateId);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  // Each probe is stamped when its answer is back: a probe that found the lock taken found it so at some
  // moment before its stamp.
  let probing = true;
  const answers: { at: number; got: boolean }[] = [];
  let swappingSince: number | undefined;
  const probe = (async () => {
    const key = liveLockKey(config.projector.schema, 'things');
    while (probing) {
      const c = await db.pool.connect();
      try {
        const { rows } = await c.query<{ got: boolean }>('SELECT pg_try_advisory_lock_shared(hashtext($1)) AS got', [key]);
        answers.push({ at: Date.now(), got: rows[0]!.got });
        if (rows[0]!.got) await c.query('SELECT pg_advisory_unlock_shared(hashtext($1))', [key]);
      } finally {
        c.release();
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();

  let outcome: RebuildResult | Error;
  try {
    outcome = await rebuildProjection({
      config,
      logger,
      projection: things,
      pool: db.pool,
      catalog,
      from: { timestamp: since },
      groupIdPrefix: uniqueName('r'),
      sessionTimeoutMs: 6000,
      timeoutMs: 30_000,
      onProgress: (p) => {
        if (p.phase === 'swapping') swappingSince ??= Date.now();
      },
    });
  } catch (err) {
    outcome = err as Error;
  }
  probing = false;
  await probe;
  // A little more flow after the swap: live now applies into the new generation.
  await new Promise((r) => setTimeout(r, 500));
  flowing = false;
  await flow;

  expect(outcome).toMatchObject({ projection: 'things', generation: 2, swapped: true });
  // The lock was taken only for the swap itself, never while waiting: every probe that found it taken was
  // answered after the swap began, and probes during the catch-up found it free.
  expect(swappingSince).toBeDefined();
  const beforeSwap = answers.filter((a) => a.at < swappingSince!);
  const unavailable = answers.filter((a) => !a.got);
  process.stdout.write(
    `rebuild-from-timestamp: ${answers.length} probes, ${beforeSwap.length} before the swap began, ${unavailable.length} found live's lock taken (${unavailable.map((a) => a.at - swappingSince!).join(', ')} ms after)\n`,
  );
  expect(beforeSwap.length).toBeGreaterThan(0);
  expect(beforeSwap.filter((a) => !a.got)).toEqual([]);
  // The new generation holds the events since the timestamp and everything that flowed.
  const expected = [...after.map((e) => e.aggregateId), ...flowed].sort();
  await waitFor('live caught up after the swap', async () => (await count()) === expected.length);
  const { rows } = await db.pool.query<{ id: string }>('SELECT id FROM things');
  expect(rows.map((r) => r.id).sort()).toEqual(expected);
}, 120_000);
