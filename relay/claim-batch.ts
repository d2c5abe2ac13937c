import type pg from 'pg';
import { ident } from '../core/pg';

/** One outbox event waiting for delivery, with everything needed to encode and publish it. */
export interface PendingEvent {
  id: string;
  eventId: string;
  aggregateType: string;
  aggregateId: string;
  aggregateVersion: number;
  eventType: string;
  schemaVersion: number;
  payload: unknown;
  actorId: string;
  traceId: string;
  correlationId: string | null;
  causationId: string | null;
  traceparent: string | null;
  occurredAt: string;
  hash: Buffer;
  prevHash: Buffer;
  attempts: number;
}

/**
 * The next events to publish, oldest first, from the delivery queue (no cursor: a row is pending until
 * the relay marks it delivered, so a transaction that commits late is simply picked up when it becomes
 * visible). Within one aggregate ids follow version order (the insert trigger assigns both under the
 * aggregate's lock), so `ORDER BY id` keeps per-aggregate order; an aggregate with a parked event is
 * held back entirely until the parked event is retried or skipped. `inFlight` are ids being sent right
 * now (the pipelined next batch must not claim them again).
 */
export async function claimBatch(db: pg.ClientBase | pg.Pool, schema: string, limit: number, inFlight: string[] = []): Promise<PendingEvent[]> {
  const s = ident(schema);
  const { rows } = await db.query<PendingEvent>(
    `SELECT o.id::text AS "id", o.event_id::text AS "eventId", o.aggregate_type AS "aggregateType", o.aggregate_id AS "aggregateId",
            o.aggregate_version::int AS "aggregateVersion", o.event_type AS "eventType", o.schema_version AS "schemaVersion",
            o.payload, o.actor_id AS "actorId", o.trace_id AS "traceId", o.correlation_id AS "correlationId",
            o.causation_id AS "causationId", o.traceparent,
            to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "occurredAt",
            o.hash, o.prev_hash AS "prevHash", d.attempts
       FROM ${s}.outbox_delivery d
       JOIN ${s}.outbox o ON o.id = d.id
      WHERE d.delivered_at IS NULL
        AND d.parked_at IS NULL
        AND d.id <> ALL($2::bigint[])
        AND NOT EXISTS (SELECT 1 FROM ${s}.outbox_delivery p
                         WHERE p.aggregate_type = d.aggregate_type AND p.aggregate_id = d.aggregate_id
                           AND p.parked_at IS NOT NULL AND p.delivered_at IS NULL)
      ORDER BY d.id
      LIMIT $1`,
    [limit, inFlight],
  );
  return rows;
}
