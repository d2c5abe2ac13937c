import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { startRelay } from '../../relay';
import { chunkBySize, partitionFor, prepareMessages, type EncodedEvent } from '../../relay/publish-batch';
import type { PendingEvent } from '../../relay/claim-batch';
import { checkDelivery } from '../support/delivery-check';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { relayConfig } from '../support/relay-env';

// A claimed batch bigger than the broker takes in one record batch (message.max.bytes, 1 MiB) is sent
// as several requests; a single event bigger than that is parked, not retried forever.
const db = useTestDatabase();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

test('5,000 events of 1 KB in one claimed batch on one partition are all delivered; a 2 MB event is parked', async () => {
  const topic = uniqueName('large');
  const config = relayConfig(db.url, topic, { OUTBOX_RELAY_BATCH_SIZE: '5000', OUTBOX_TOPIC_PARTITIONS: '1' });
  await db.pool.query(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     SELECT 'user', 'big' || (g % 50), 'UserRegistered', 1, jsonb_build_object('email', g || '@example.com', 'name', repeat('n', 1000)), 'a', 't'
       FROM generate_series(1, 5000) g`,
  );
  await db.pool.query(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     VALUES ('user', 'huge', 'UserRegistered', 1, jsonb_build_object('email', 'h@example.com', 'name', repeat('h', 2000000)), 'a', 't')`,
  );
  const relay = startRelay({ config, logger });
  try {
    const report = await checkDelivery(db.pool, createKafka(config.kafka, logger), [topic], { where: "aggregate_id <> 'huge'", timeoutMs: 90_000 });
    expect(report).toMatchObject({ committed: 5000, lost: 0, reordered: 0, unexpected: 0, duplicates: 0, divergent: 0, malformed: 0 });
    const { rows } = await db.pool.query<{ park_reason: string }>("SELECT park_reason FROM outbox_delivery WHERE aggregate_id = 'huge'");
    expect(rows[0]?.park_reason).toMatch(/bytes, more than the broker accepts \(OUTBOX_KAFKA_MAX_MESSAGE_BYTES=1000000\)/);
  } finally {
    await relay.stop();
  }
});

test('chunking keeps each partition under the limit and the original order', () => {
  const events: EncodedEvent[] = Array.from({ length: 30 }, (_, i) => ({
    topic: 't',
    value: Buffer.alloc(100),
    event: {
      id: String(i),
      eventId: `e${i}`,
      aggregateId: `a${i % 3}`,
      aggregateType: 'user',
      aggregateVersion: 1,
      eventType: 'X',
      schemaVersion: 1,
      payload: {},
      actorId: 'a',
      traceId: 't',
      correlationId: null,
      causationId: null,
      traceparent: null,
      occurredAt: new Date('2026-01-01T00:00:00.000Z'),
      hash: Buffer.alloc(32),
      prevHash: Buffer.alloc(32),
    } satisfies PendingEvent,
  }));
  const messages = prepareMessages(events, () => 2);
  const perMessage = messages[0]!.bytes;
  const chunks = chunkBySize(messages, perMessage * 4);
  expect(chunks.flat().map((m) => m.id)).toEqual(events.map((e) => e.event.id));
  for (const chunk of chunks) {
    const sizes = new Map<number, number>();
    for (const m of chunk) sizes.set(m.partition, (sizes.get(m.partition) ?? 0) + m.bytes);
    for (const size of sizes.values()) expect(size).toBeLessThanOrEqual(perMessage * 4);
  }
  // The Java client's murmur2 partitioner: the same key always lands on the same partition.
  expect(partitionFor('t', Buffer.from('a1'), 6)).toBe(partitionFor('other', Buffer.from('a1'), 6));
});
