import { createLogger } from '../../core/logger';
import { OutboxError } from '../../core/errors';
import { startRelay, type PublishOutcome, type Sink } from '../../relay';
import type { EncodedEvent } from '../../relay/publish-batch';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { relayConfig } from '../support/relay-env';

// The relay loop is independent of Kafka: any Sink (prepare, publish, reset) can be the destination.
// This one keeps what it receives in memory and refuses one event for good; the loop marks what the
// sink acknowledged, parks what it refused, keeps per-aggregate order, and steps down when the sink
// says another leader took over; it is reset when the relay stops.
const db = useTestDatabase();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

class MemorySink implements Sink {
  readonly received: EncodedEvent[] = [];
  readonly prepared: string[] = [];
  refuse = new Set<string>();
  fenceNext = false;
  resets = 0;

  async prepare({ outboxName }: { topics: string[]; outboxName: string }): Promise<void> {
    this.prepared.push(outboxName);
  }

  async publish(batch: EncodedEvent[]): Promise<PublishOutcome> {
    if (this.fenceNext) {
      this.fenceNext = false;
      throw new OutboxError('FENCED', 'another leader took the destination over');
    }
    const out: PublishOutcome = { deliveries: [], refused: [] };
    const blocked = new Set<string>();
    for (const e of batch) {
      if (blocked.has(e.event.aggregateId)) continue;
      if (this.refuse.has(e.event.eventId)) {
        out.refused.push({ event: e.event, reason: 'refused by the memory sink' });
        blocked.add(e.event.aggregateId);
        continue;
      }
      this.received.push(e);
      out.deliveries.push({ id: e.event.id, topic: e.topic, partition: 0, offset: String(this.received.length - 1) });
    }
    return out;
  }

  async reset(): Promise<void> {
    this.resets += 1;
  }
}

async function insert(aggregateId: string): Promise<string> {
  const { rows } = await db.pool.query<{ event_id: string }>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     VALUES ('user', $1, 'UserEmailChanged', 1, jsonb_build_object('email', $1 || '@example.com'), 'user:test', 'trace-sink') RETURNING event_id::text`,
    [aggregateId],
  );
  return rows[0]!.event_id;
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('any Sink: acknowledged events are marked with its offsets, refused ones parked with their aggregate held back, a fenced sink makes the relay step down', async () => {
  const sink = new MemorySink();
  const a1 = await insert('a');
  const b1 = await insert('b');
  const a2 = await insert('a');
  const b2 = await insert('b');
  const a3 = await insert('a');
  sink.refuse.add(a2);
  const relay = startRelay({ config: relayConfig(db.url, uniqueName('sink')), logger, sink, standbyPollMs: 100 });
  try {
    await waitUntil('b delivered and a2 parked', async () => {
      const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NOT NULL OR parked_at IS NOT NULL`);
      return rows[0]!.n === '4';
    });
    expect(sink.received.map((e) => e.event.eventId)).toEqual([a1, b1, b2]);
    const { rows } = await db.pool.query<{ event_id: string; kafka_offset: string | null; park_reason: string | null }>(
      `SELECT o.event_id::text, d.kafka_offset::text, d.park_reason FROM outbox o JOIN outbox_delivery d ON d.id = o.id ORDER BY o.id`,
    );
    expect(rows).toEqual([
      { event_id: a1, kafka_offset: '0', park_reason: null },
      { event_id: b1, kafka_offset: '1', park_reason: null },
      { event_id: a2, kafka_offset: null, park_reason: 'refused by the memory sink' },
      { event_id: b2, kafka_offset: '2', park_reason: null },
      { event_id: a3, kafka_offset: null, park_reason: null }, // waits behind a2
    ]);
    expect(sink.prepared).toEqual([`${db.name}.outbox`]);

    // The destination says another leader took over: the relay steps down, marks nothing, and (alone) leads again.
    sink.fenceNext = true;
    const c1 = await insert('c');
    await waitUntil('c delivered after leading again', () => sink.received.some((e) => e.event.eventId === c1));
    expect(sink.prepared).toHaveLength(2);
  } finally {
    await relay.stop();
  }
  expect(sink.resets).toBe(1); // the sink's connections are released when the relay stops
});
