import { createLogger } from '../../core/logger';
import { startRelay, type EventEncoderPort, type PublishOutcome, type Sink } from '../../relay';
import type { EncodedEvent } from '../../relay/publish-batch';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { relayConfig } from '../support/relay-env';

// While a full batch is being sent, the relay claims and encodes the next one. When that fails first
// (here: the encoder throws for the next batch's events, as on a registry outage) and the send is still
// in flight, the failure is the loop's to retry, not an unhandled rejection that ends the process.
const db = useTestDatabase();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

test('the next batch failing while the current one is still being sent is retried, not left unhandled', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  let outage = true;
  const encoder: EventEncoderPort = {
    prepare: async () => undefined,
    encode: async (e) => {
      if (e.aggregateId === 'late' && outage) throw new Error('the registry is unreachable (test)');
      return { ok: true, value: Buffer.from(e.eventId), schemaId: 1 };
    },
  };
  const received: string[] = [];
  let sends = 0;
  const sink: Sink = {
    prepare: async () => undefined,
    reset: async () => undefined,
    async publish(batch: EncodedEvent[]): Promise<PublishOutcome> {
      // The first send lasts until the next batch's encoding has failed (and a while longer).
      if (++sends === 1) await new Promise((r) => setTimeout(r, 1500));
      received.push(...batch.map((e) => e.event.eventId));
      return { deliveries: batch.map((e, i) => ({ id: e.event.id, topic: e.topic, partition: 0, offset: String(received.length - batch.length + i) })), refused: [] };
    },
  };
  for (const id of ['a', 'late']) {
    await db.pool.query(
      `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
       SELECT 'user', $1, 'UserEmailChanged', 1, jsonb_build_object('email', $1 || g || '@example.com'), 'user:test', 'trace-pipeline' FROM generate_series(1, 10) g`,
      [id],
    );
  }
  const failures: string[] = [];
  const relay = startRelay({
    config: relayConfig(db.url, uniqueName('pipeline'), { OUTBOX_RELAY_BATCH_SIZE: '10' }),
    logger,
    encoder,
    sink,
    observer: { failed: (stage) => failures.push(stage) },
  });
  try {
    const deadline = Date.now() + 60_000;
    while (!failures.includes('encode') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    outage = false;
    while (received.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setImmediate(r));
  } finally {
    await relay.stop();
    process.off('unhandledRejection', onUnhandled);
  }
  expect(unhandled).toEqual([]);
  expect(failures).toContain('encode');
  const { rows } = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL');
  expect(rows[0]!.n).toBe('0');
});
