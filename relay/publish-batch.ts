import type { Span } from '@opentelemetry/api';
import { Partitioners, type Message, type PartitionMetadata, type Producer } from 'kafkajs';
import { endSpans, headerTraceparent, startMessagingSpan } from '../core/tracing';
import { envelopeHeaders, EVENT_HEADERS } from '../event/headers';
import type { PendingEvent } from './claim-batch';
import type { Delivery } from './mark-delivered';

export interface EncodedEvent {
  event: PendingEvent;
  topic: string;
  value: Buffer;
}

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

/** How records are dressed beyond the event's own headers (RelaySettings.cloudEvents). */
export interface RecordFormat {
  cloudEvents?: { source: string } | undefined;
  /** Start an OpenTelemetry producer span per record (a no-op without an SDK). */
  trace?: boolean;
}

/**
 * Kafka headers carried by every message: the event's metadata (event/headers.ts), readable without
 * decoding the value; with `format.cloudEvents`, also the CloudEvents Kafka binary-mode attributes.
 */
export function eventHeaders(e: PendingEvent, format: RecordFormat = {}, span?: Span): Record<string, string> {
  const h = envelopeHeaders(e);
  // The producer span's context when there is one (the consumer's span becomes its child), else the
  // context the writer stored; none is made up.
  const traceparent = headerTraceparent(span, e.traceparent);
  if (traceparent !== null) h[EVENT_HEADERS.traceparent] = traceparent;
  else delete h[EVENT_HEADERS.traceparent];
  if (format.cloudEvents) Object.assign(h, cloudEventHeaders(e, format.cloudEvents.source));
  return h;
}

/**
 * CloudEvents 1.0 attributes in Kafka binary content mode: the value stays the Avro record (Confluent
 * wire format), the attributes are `ce_`-prefixed headers and the data content type is `content-type`.
 */
export function cloudEventHeaders(e: PendingEvent, source: string): Record<string, string> {
  return {
    ce_specversion: '1.0',
    ce_id: e.eventId,
    ce_source: source,
    ce_type: e.eventType,
    ce_time: e.occurredAt.toISOString(),
    ce_subject: `${e.aggregateType}/${e.aggregateId}`,
    'content-type': 'application/avro',
  };
}

/** One record ready to send, with where it goes. */
export interface Outgoing {
  id: string;
  topic: string;
  partition: number;
  message: Message;
  /** Its size in a record batch of its own (see recordBytes). */
  bytes: number;
  /** The producer span of this attempt to publish it (format.trace). */
  span?: Span;
}

/** Bytes of a record batch's header (magic v2: offsets, CRC, producer id/epoch, sequence, count). */
export const RECORD_BATCH_OVERHEAD = 61;

/** Bytes of a zig-zag varint (Kafka record fields). */
function varintBytes(n: number): number {
  let z = n >= 0 ? n * 2 : -n * 2 - 1;
  let bytes = 1;
  while (z >= 128) {
    z = Math.floor(z / 128);
    bytes += 1;
  }
  return bytes;
}

/**
 * The size of a record (Kafka's record format v2) with its key, value and headers, plus the header of a
 * record batch, as the broker measures it against message.max.bytes when the record is alone in its
 * batch. Timestamp and offset deltas are counted at their widest (10 and 5 bytes).
 */
export function recordBytes(key: Buffer, value: Buffer, headers: Record<string, string>): number {
  let body = 1 + 10 + 5 + varintBytes(key.length) + key.length + varintBytes(value.length) + value.length;
  const entries = Object.entries(headers);
  body += varintBytes(entries.length);
  for (const [k, v] of entries) {
    const kb = Buffer.byteLength(k);
    const vb = Buffer.byteLength(v);
    body += varintBytes(kb) + kb + varintBytes(vb) + vb;
  }
  return RECORD_BATCH_OVERHEAD + varintBytes(body) + body;
}

/** The record size of an encoded event as it will be published (key, value, headers, batch header). */
export function encodedRecordBytes(event: PendingEvent, value: Buffer, format: RecordFormat = {}): number {
  // Measured with the stored traceparent. A producer span may add one to an event stored without it
  // (55 bytes); a record that then outgrows the broker's limit is refused by the broker and parked.
  return recordBytes(Buffer.from(event.aggregateId, 'utf8'), value, eventHeaders(event, format));
}

/**
 * Messages and where they go, in claim order. The record timestamp is the event's occurred_at (event
 * time: a consumer seeking by timestamp, such as `rebuild --from-timestamp`, seeks by when things happened).
 */
export function prepareMessages(batch: EncodedEvent[], partitionCount: (topic: string) => number, format: RecordFormat = {}): Outgoing[] {
  return batch.map(({ event, topic, value }) => {
    const key = Buffer.from(event.aggregateId, 'utf8');
    const partition = partitionFor(topic, key, partitionCount(topic));
    const span = format.trace
      ? startMessagingSpan({
          operation: 'send',
          topic,
          parent: event.traceparent,
          eventId: event.eventId,
          key: event.aggregateId,
          partition,
          attributes: { 'kafka_outbox.aggregate_type': event.aggregateType, 'kafka_outbox.aggregate_version': String(event.aggregateVersion) },
        })
      : undefined;
    const headers = eventHeaders(event, format, span);
    const timestamp = String(event.occurredAt.getTime());
    return { id: event.id, topic, partition, message: { key, value, partition, headers, timestamp }, bytes: recordBytes(key, value, headers), ...(span ? { span } : {}) };
  });
}

/**
 * Split messages (in order) into requests whose bytes per partition stay under the limit. Messages
 * whose id is in `alone` get a request of their own (to find out which one a broker refuses).
 */
export function chunkBySize(messages: Outgoing[], maxPartitionBytes: number, alone: ReadonlySet<string> = new Set()): Outgoing[][] {
  const chunks: Outgoing[][] = [];
  let current: Outgoing[] = [];
  let sizes = new Map<string, number>();
  const flush = (): void => {
    if (current.length > 0) chunks.push(current);
    current = [];
    sizes = new Map();
  };
  for (const m of messages) {
    if (alone.has(m.id)) {
      flush();
      chunks.push([m]);
      continue;
    }
    const key = `${m.topic}/${m.partition}`;
    const size = (sizes.get(key) ?? 0) + m.bytes;
    if (size > maxPartitionBytes && current.length > 0) flush();
    current.push(m);
    sizes.set(key, (sizes.get(key) ?? 0) + m.bytes);
  }
  flush();
  return chunks;
}

/** What a chunk is sent with: the producer, or a transaction of it. */
export type ProduceTarget = Pick<Producer, 'sendBatch'>;

/**
 * Send one request and return what the broker acknowledged. Partitions were chosen with the
 * Java-compatible murmur2 partitioner (prepareMessages), so each message's offset follows from its
 * partition's base offset; messages of one aggregate share a key and a partition, and keep their order.
 */
export async function sendChunk(target: ProduceTarget, chunk: Outgoing[], timeoutMs: number): Promise<Delivery[]> {
  const byTopic = new Map<string, Message[]>();
  for (const m of chunk) {
    const list = byTopic.get(m.topic) ?? [];
    list.push(m.message);
    byTopic.set(m.topic, list);
  }
  const acks = await target.sendBatch({ topicMessages: [...byTopic.entries()].map(([topic, messages]) => ({ topic, messages })), acks: -1, timeout: timeoutMs });
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

/**
 * End the producer spans of one publication attempt: acknowledged records with their offset, the others
 * with `error` (or "not acknowledged" when the attempt stopped before them).
 */
export function finishSpans(outgoing: Outgoing[], sent: Delivery[], error?: unknown): void {
  const acked = new Map(sent.map((d) => [d.id, d]));
  for (const o of outgoing) {
    if (!o.span) continue;
    const d = acked.get(o.id);
    if (d) {
      o.span.setAttribute('messaging.kafka.offset', Number(d.offset));
      endSpans([o.span]);
    } else {
      endSpans([o.span], error ?? new Error('not acknowledged in this attempt'));
    }
  }
}
