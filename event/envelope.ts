/**
 * The event envelope: the one shape of an event for every part of kafka-outbox. The writer appends
 * it, the relay reads it from the outbox and publishes it, the schema layer encodes and decodes it, the
 * projector applies it, and the hash chain is computed over it (docs/hash-chain.md).
 *
 * Field names are the camelCase of the outbox columns (`aggregate_version` → `aggregateVersion`), of
 * the Avro envelope fields and of the Kafka headers (event/headers.ts).
 */
export interface EventEnvelope<P = unknown> {
  /** UUID of the event: the idempotency key a consumer dedupes on. */
  eventId: string;
  aggregateType: string;
  aggregateId: string;
  /** 1, 2, 3 … per aggregate without gaps, assigned by the database. */
  aggregateVersion: number;
  eventType: string;
  /** Version of the payload's schema. */
  schemaVersion: number;
  /** When the change happened (the outbox keeps millisecond precision). */
  occurredAt: Date;
  /** Who caused the event (`user:7`, `service:billing`). */
  actorId: string;
  /** Trace id of the request that caused it. */
  traceId: string;
  correlationId: string | null;
  causationId: string | null;
  /** W3C traceparent of the writing transaction, if the writer gave one. */
  traceparent: string | null;
  /** A JSON object (field names as in the event type's schema). */
  payload: P;
  /** This event's hash-chain link: SHA-256(prevHash ‖ canonical encoding). */
  hash: Buffer;
  /** The aggregate's previous event's hash (32 zero bytes for version 1). */
  prevHash: Buffer;
}

/** An event as stored in the outbox table: the envelope and its row id. */
export interface StoredEvent<P = unknown> extends EventEnvelope<P> {
  /** The outbox row id (a bigint, as a decimal string): commit order within an aggregate. */
  id: string;
}

/**
 * An event decoded from a Kafka message. `schemaVersion` and `payload` are the consumer's latest local
 * version of the event type (after Avro resolution and upcasters); `writerSchemaVersion` is the version
 * it was written (and hashed) with.
 */
export interface DecodedEvent<P = Record<string, unknown>> extends EventEnvelope<P> {
  writerSchemaVersion: number;
  /** occurred_at exactly as on the wire: microseconds since the epoch. */
  occurredAtMicros: number;
}

/** The part of an event a reducer folds. */
export type ReducibleEvent<P = unknown> = Pick<EventEnvelope<P>, 'eventId' | 'eventType' | 'aggregateType' | 'aggregateId' | 'aggregateVersion' | 'occurredAt' | 'payload'>;
