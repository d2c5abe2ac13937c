import type { StoredEvent } from './envelope';

/** An outbox row as `storedEventColumns` selects it. */
export interface StoredEventRow {
  id: string;
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: string;
  event_type: string;
  schema_version: number;
  payload: unknown;
  actor_id: string;
  trace_id: string;
  correlation_id: string | null;
  causation_id: string | null;
  traceparent: string | null;
  occurred_at: Date;
  hash: Buffer;
  prev_hash: Buffer;
}

/**
 * The select list of an outbox row (table alias `alias`) for `storedEventFromRow`. Bigints are read as
 * text: an aggregate version or row id past 2³¹ must not overflow.
 */
export function storedEventColumns(alias = 'o'): string {
  const a = alias;
  return [
    `${a}.id::text AS id`,
    `${a}.event_id::text AS event_id`,
    `${a}.aggregate_type`,
    `${a}.aggregate_id`,
    `${a}.aggregate_version::text AS aggregate_version`,
    `${a}.event_type`,
    `${a}.schema_version`,
    `${a}.payload`,
    `${a}.actor_id`,
    `${a}.trace_id`,
    `${a}.correlation_id`,
    `${a}.causation_id`,
    `${a}.traceparent`,
    `${a}.occurred_at`,
    `${a}.hash`,
    `${a}.prev_hash`,
  ].join(', ');
}

export function storedEventFromRow(r: StoredEventRow): StoredEvent {
  return {
    id: r.id,
    eventId: r.event_id,
    aggregateType: r.aggregate_type,
    aggregateId: r.aggregate_id,
    aggregateVersion: Number(r.aggregate_version),
    eventType: r.event_type,
    schemaVersion: r.schema_version,
    payload: r.payload,
    actorId: r.actor_id,
    traceId: r.trace_id,
    correlationId: r.correlation_id,
    causationId: r.causation_id,
    traceparent: r.traceparent,
    occurredAt: r.occurred_at,
    hash: r.hash,
    prevHash: r.prev_hash,
  };
}
