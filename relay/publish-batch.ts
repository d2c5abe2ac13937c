import { Partitioners, type Message, type PartitionMetadata, type Producer } from 'kafkajs';
import type { PendingEvent } from './claim-batch';
import type { Delivery } from './mark-delivered';

export interface EncodedEvent {
  event: PendingEvent;
  topic: string;
  value: Buffer;
}

/**
 * Bytes of one partition's records in one produce request. The broker refuses a record batch larger
 * than message.max.bytes (1 MiB by default), so a claimed batch is sent as several requests when its
 * records for one partition would exceed this. Requests are still sent one after the other.
 */
export const DEFAULT_MAX_PARTITION_BYTES = 900_000;

const partitioner = Partitioners.DefaultPartitioner();
const metadataCache = new Map<number, PartitionMetadata[]>();

/** The partition Kafka's Java client (and kafkajs's default partitioner) picks for a key. */
export function partitionFor(topic: string, key: Buffer, partitions: number): number {
  let metadata = metadataCache.get(partitions);
  if (!metadata) {
    metadata = Array.from({ length: partitions }, (_, i) => ({ partitionErrorCode: 0, partitionId: i, leader: 0, replicas: [0], isr: [0] }));
    metadataCache.set(partitions, metadata);
  }
  return partitioner({ topic, partitionMetadata: metadata, message: { key, value: null } });
}

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

interface Outgoing {
  id: string;
  topic: string;
  partition: number;
  message: Message;
  bytes: number;
}

/** Approximate record size: key, value and headers (what counts against the broker's batch limit). */
function recordBytes(key: Buffer, value: Buffer, headers: Record<string, string>): number {
  let n = key.length + value.length + 24;
  for (const [k, v] of Object.entries(headers)) n += k.length + Buffer.byteLength(v) + 4;
  return n;
}

/** Messages and where they go, in claim order. */
export function prepareMessages(batch: EncodedEvent[], partitionCount: (topic: string) => number): Outgoing[] {
  return batch.map(({ event, topic, value }) => {
    const key = Buffer.from(event.aggregateId, 'utf8');
    const headers = eventHeaders(event);
    const partition = partitionFor(topic, key, partitionCount(topic));
    return { id: event.id, topic, partition, message: { key, value, partition, headers }, bytes: recordBytes(key, value, headers) };
  });
}

/** Split messages (in order) into requests whose bytes per partition stay under the limit. */
export function chunkBySize(messages: Outgoing[], maxPartitionBytes: number): Outgoing[][] {
  const chunks: Outgoing[][] = [];
  let current: Outgoing[] = [];
  let sizes = new Map<string, number>();
  for (const m of messages) {
    const key = `${m.topic}/${m.partition}`;
    const size = (sizes.get(key) ?? 0) + m.bytes;
    if (size > maxPartitionBytes && current.length > 0) {
      chunks.push(current);
      current = [];
      sizes = new Map();
    }
    current.push(m);
    sizes.set(key, (sizes.get(key) ?? 0) + m.bytes);
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

/**
 * Send a claimed batch and return what the broker acknowledged. Each request is a single `send` call and
 * the next starts only after the previous was acknowledged (never two in flight on the idempotent
 * producer: concurrent sends can lose messages, kafkajs#1005). Partitions are chosen here with the
 * Java-compatible murmur2 partitioner so each message's offset is known from its partition's base
 * offset; messages of one aggregate share a key, a partition, and keep their order. If a later request
 * fails, the earlier ones' deliveries are lost to the caller: those events are published again
 * (at-least-once, same event_id).
 */
export async function publishBatch(
  producer: Producer,
  batch: EncodedEvent[],
  partitionCount: (topic: string) => number,
  timeoutMs: number,
  maxPartitionBytes: number = DEFAULT_MAX_PARTITION_BYTES,
): Promise<Delivery[]> {
  const deliveries: Delivery[] = [];
  for (const chunk of chunkBySize(prepareMessages(batch, partitionCount), maxPartitionBytes)) {
    deliveries.push(...(await sendChunk(producer, chunk, timeoutMs)));
  }
  return deliveries;
}

async function sendChunk(producer: Producer, chunk: Outgoing[], timeoutMs: number): Promise<Delivery[]> {
  const byTopic = new Map<string, Message[]>();
  for (const m of chunk) {
    const list = byTopic.get(m.topic) ?? [];
    list.push(m.message);
    byTopic.set(m.topic, list);
  }
  const acks = await producer.sendBatch({ topicMessages: [...byTopic.entries()].map(([topic, messages]) => ({ topic, messages })), acks: -1, timeout: timeoutMs });
  const base = new Map<string, bigint>();
  for (const r of acks) {
    if (r.errorCode !== 0) throw new Error(`broker rejected ${r.topicName}/${r.partition} with error code ${r.errorCode}`);
    base.set(`${r.topicName}/${r.partition}`, BigInt(r.baseOffset ?? '-1'));
  }
  const next = new Map<string, bigint>();
  return chunk.map((m) => {
    const key = `${m.topic}/${m.partition}`;
    const b = base.get(key);
    if (b === undefined) throw new Error(`no acknowledgement for ${key}`);
    const k = next.get(key) ?? 0n;
    next.set(key, k + 1n);
    return { id: m.id, topic: m.topic, partition: m.partition, offset: (b + k).toString() };
  });
}
