import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { startRelay } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { relayConfig } from '../support/relay-env';

// The broker measures a whole record batch against its limit: key, value, headers and the batch header.
// An event whose value fits but whose record does not is parked before it is sent; an event the broker
// refuses anyway (here the topic's own max.message.bytes is below OUTBOX_KAFKA_MAX_MESSAGE_BYTES) is
// parked when the broker says "too large", and everything else keeps flowing: no batch is retried forever.
const databases = { idempotent: useTestDatabase(), transactional: useTestDatabase() };
let db = databases.idempotent;
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

async function insert(aggregateId: string, name: string, correlationId: string | null = null): Promise<string> {
  const { rows } = await db.pool.query<{ event_id: string }>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
     VALUES ('user', $1, 'UserRegistered', 1, jsonb_build_object('email', $1 || '@example.com', 'name', $2::text), 'user:test', 'trace-size', $3)
     RETURNING event_id::text`,
    [aggregateId, name, correlationId],
  );
  return rows[0]!.event_id;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test.each(['idempotent', 'transactional'] as const)(
  '%s producer: a record too large with its key and headers is parked before sending; one the broker refuses as too large is parked; the rest flows',
  async (mode) => {
    db = databases[mode];
    const topic = uniqueName('size');
    const config = relayConfig(db.url, topic, {
      OUTBOX_KAFKA_MAX_MESSAGE_BYTES: '50000',
      OUTBOX_TOPIC_PARTITIONS: '1',
      OUTBOX_RELAY_TRANSACTIONAL: String(mode === 'transactional'),
    });
    const kafka = createKafka(config.kafka, logger);
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [{ topic, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: 'max.message.bytes', value: '20000' }] }],
      });
    } finally {
      await admin.disconnect();
    }

    const before = [await insert('b', 'b1'), await insert('b', 'b2')];
    const refusedByBroker = await insert('a', 'x'.repeat(30_000)); // fits 50,000; the topic takes 20,000
    const heldBack = await insert('a', 'a2'); // waits behind its aggregate's parked event
    const tooLargeWithHeaders = await insert('c', 'c'.repeat(40_000), 'r'.repeat(12_000)); // value < 50,000, record > 50,000
    const after = [await insert('b', 'b3'), await insert('d', 'd1')];

    const relay = startRelay({ config, logger });
    try {
      await waitUntil('the small events delivered and the two large ones parked', async () => {
        const { rows } = await db.pool.query<{ delivered: string; parked: string }>(
          `SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL)::text AS delivered, count(*) FILTER (WHERE parked_at IS NOT NULL)::text AS parked FROM outbox_delivery`,
        );
        return rows[0]!.delivered === '4' && rows[0]!.parked === '2';
      });
      const { rows } = await db.pool.query<{ event_id: string; park_reason: string | null; delivered: boolean }>(
        `SELECT o.event_id::text, d.park_reason, d.delivered_at IS NOT NULL AS delivered FROM outbox o JOIN outbox_delivery d ON d.id = o.id`,
      );
      const byId = new Map(rows.map((r) => [r.event_id, r]));
      expect(byId.get(refusedByBroker)?.park_reason).toMatch(/too large \((MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE)\)/);
      expect(byId.get(tooLargeWithHeaders)?.park_reason).toMatch(/the record is \d+ bytes, more than the broker accepts \(OUTBOX_KAFKA_MAX_MESSAGE_BYTES=50000\)/);
      expect(byId.get(heldBack)).toMatchObject({ park_reason: null, delivered: false });
      const onTopic = await readTopics(kafka, [topic], { count: 4 });
      expect(onTopic.map((m) => m.message.headers?.event_id?.toString())).toEqual([...before, ...after]);
    } finally {
      await relay.stop();
    }
  },
);
