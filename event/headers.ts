import { canonicalTimestamp } from './canonical';
import type { EventEnvelope } from './envelope';

/**
 * The Kafka headers every published event carries: its metadata, readable without decoding the value
 * (routing, dedupe, tracing, auditing from a plain consumer). Values are UTF-8 strings.
 */
export const EVENT_HEADERS = {
  eventId: 'event_id',
  eventType: 'event_type',
  schemaVersion: 'schema_version',
  aggregateType: 'aggregate_type',
  aggregateId: 'aggregate_id',
  aggregateVersion: 'aggregate_version',
  actorId: 'actor_id',
  traceId: 'trace_id',
  occurredAt: 'occurred_at',
  hash: 'hash',
  prevHash: 'prev_hash',
  traceparent: 'traceparent',
  correlationId: 'correlation_id',
  causationId: 'causation_id',
} as const;

/** The headers of an event (optional fields only when set; hashes as lower-case hex). */
export function envelopeHeaders(e: Omit<EventEnvelope, 'payload'>): Record<string, string> {
  const h: Record<string, string> = {
    [EVENT_HEADERS.eventId]: e.eventId,
    [EVENT_HEADERS.eventType]: e.eventType,
    [EVENT_HEADERS.schemaVersion]: String(e.schemaVersion),
    [EVENT_HEADERS.aggregateType]: e.aggregateType,
    [EVENT_HEADERS.aggregateId]: e.aggregateId,
    [EVENT_HEADERS.aggregateVersion]: String(e.aggregateVersion),
    [EVENT_HEADERS.actorId]: e.actorId,
    [EVENT_HEADERS.traceId]: e.traceId,
    [EVENT_HEADERS.occurredAt]: canonicalTimestamp(e.occurredAt),
    [EVENT_HEADERS.hash]: e.hash.toString('hex'),
    [EVENT_HEADERS.prevHash]: e.prevHash.toString('hex'),
  };
  if (e.traceparent !== null) h[EVENT_HEADERS.traceparent] = e.traceparent;
  if (e.correlationId !== null) h[EVENT_HEADERS.correlationId] = e.correlationId;
  if (e.causationId !== null) h[EVENT_HEADERS.causationId] = e.causationId;
  return h;
}

/** Kafka message headers as a client library returns them. */
export type RawHeaders = Record<string, Buffer | string | Array<Buffer | string> | undefined>;

/** One header as a string (the first value if repeated); undefined when absent. */
export function headerText(headers: RawHeaders | undefined, name: string): string | undefined {
  const v = headers?.[name];
  const first = Array.isArray(v) ? v[0] : v;
  if (first === undefined) return undefined;
  return Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
}

/** The metadata headers of a message, by envelope field name (absent headers are left out). */
export function metadataFromHeaders(headers: RawHeaders | undefined): Partial<Record<keyof typeof EVENT_HEADERS, string>> {
  const out: Partial<Record<keyof typeof EVENT_HEADERS, string>> = {};
  for (const [field, name] of Object.entries(EVENT_HEADERS) as Array<[keyof typeof EVENT_HEADERS, string]>) {
    const v = headerText(headers, name);
    if (v !== undefined) out[field] = v;
  }
  return out;
}
