import { Partitioners, type Message, type Producer } from 'kafkajs';
import type { PendingEvent } from './claim-batch';
import type { Delivery } from './mark-delivered';

export interface EncodedEvent {
  event: PendingEvent;
  topic: string;
  value: Buffer;
}

const partitioner = Partitioners.DefaultPartitioner();

/** Kafka headers carried by every message: the event's metadata, readable without decoding the value. */
export function eventHeaders(e: PendingEvent): Record<string, string> {
  const h: Record<string, string> = {
    event_id: e.eventId,
    event_type: e.eventType,
    schema_version: String(e.schemaVersion),
    aggregate_type: e.aggregateType,
    aggregate_id: e.aggregateId,
    aggregate_version: String(e.aggregateVersion),
    actor_id: e.actorId,
    trace_id: e.traceId,
    occurred_at: e.occurredAt,
    hash: e.hash.toString('hex'),
    prev_hash: e.prevHash.toString('hex'),
    traceparent: e.traceparent ?? defaultTraceparent(e.traceId, e.eventId),
  };
  if (e.correlationId !== null) h.correlation_id = e.correlationId;
  if (e.causationId !== null) h.causation_id = e.causationId;
  return h;
}

/**
 * W3C traceparent for an event written without one: version 00, the event's trace id (when it is a
 * 32-hex-digit W3C trace id), a parent id derived from the event id, sampled.
 */
function defaultTraceparent(traceId: string, eventId: string): string {
  const trace = /^[0-9a-f]{32}$/.test(traceId) && !/^0+$/.test(traceId) ? traceId : eventId.replace(/-/g, '');
  const parent = eventId.replace(/-/g, '').slice(0, 16);
  return `00-${trace}-${parent}-01`;
}

/**
 * Send one batch with a single `send` call (never two in flight on the idempotent producer: concurrent
 * sends can lose messages, kafkajs#1005) and return what the broker acknowledged. Partitions are chosen
 * here with the Java-compatible murmur2 partitioner so each message's offset is known from the
 * partition's base offset; messages of one aggregate share a key, a partition, and keep their order.
 */
export async function publishBatch(
  producer: Producer,
  batch: EncodedEvent[],
  partitionCount: (topic: string) => number,
  timeoutMs: number,
): Promise<Delivery[]> {
  const byTopic = new Map<string, { messages: Message[]; ids: string[]; partitions: number[] }>();
  for (const { event, topic, value } of batch) {
    let t = byTopic.get(topic);
    if (!t) {
      t = { messages: [], ids: [], partitions: [] };
      byTopic.set(topic, t);
    }
    const key = Buffer.from(event.aggregateId, 'utf8');
    const n = partitionCount(topic);
    const partition = partitioner({
      topic,
      partitionMetadata: Array.from({ length: n }, (_, i) => ({ partitionErrorCode: 0, partitionId: i, leader: 0, replicas: [0], isr: [0] })),
      message: { key, value },
    });
    t.messages.push({ key, value, partition, headers: eventHeaders(event) });
    t.ids.push(event.id);
    t.partitions.push(partition);
  }
  const topicMessages = [...byTopic.entries()].map(([topic, t]) => ({ topic, messages: t.messages }));
  const acks = await producer.sendBatch({ topicMessages, acks: -1, timeout: timeoutMs });

  const base = new Map<string, bigint>();
  for (const r of acks) {
    if (r.errorCode !== 0) throw new Error(`broker rejected ${r.topicName}/${r.partition} with error code ${r.errorCode}`);
    base.set(`${r.topicName}/${r.partition}`, BigInt(r.baseOffset ?? '-1'));
  }
  const deliveries: Delivery[] = [];
  for (const [topic, t] of byTopic) {
    const seen = new Map<number, bigint>();
    t.ids.forEach((id, i) => {
      const partition = t.partitions[i]!;
      const b = base.get(`${topic}/${partition}`);
      if (b === undefined) throw new Error(`no acknowledgement for ${topic}/${partition}`);
      const k = seen.get(partition) ?? 0n;
      seen.set(partition, k + 1n);
      deliveries.push({ id, topic, partition, offset: (b + k).toString() });
    });
  }
  return deliveries;
}
