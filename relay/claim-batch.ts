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
  // Two steps in one statement, so the plan stays cheap however large the history grows and whatever
  // the statistics say: the pending ids come from the partial index in id order (stops after `limit`),
  // then only those rows of the history are fetched by primary key. (Joining the tables directly let
  // the planner merge-join from the first id of the history, reading it all on every claim.)
  const { rows } = await db.query<PendingEvent>(
    `WITH pending AS MATERIALIZED (
       SELECT d.id FROM ${s}.outbox_delivery d
        WHERE d.delivered_at IS NULL
          AND d.parked_at IS NULL
          AND d.id <> ALL($2::bigint[])
          AND NOT EXISTS (SELECT 1 FROM ${s}.outbox_delivery p
                           WHERE p.aggregate_type = d.aggregate_type AND p.aggregate_id = d.aggregate_id
                             AND p.parked_at IS NOT NULL AND p.delivered_at IS NULL)
        ORDER BY d.id
        LIMIT $1)
     SELECT o.id::text AS "id", o.event_id::text AS "eventId", o.aggregate_type AS "aggregateType", o.aggregate_id AS "aggregateId",
            o.aggregate_version::int AS "aggregateVersion", o.event_type AS "eventType", o.schema_version AS "schemaVersion",
            o.payload, o.actor_id AS "actorId", o.trace_id AS "traceId", o.correlation_id AS "correlationId",
            o.causation_id AS "causationId", o.traceparent,
            to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS "occurredAt",
            o.hash, o.prev_hash AS "prevHash"
       FROM ${s}.outbox o
      WHERE o.id = ANY (ARRAY(SELECT id FROM pending))
      ORDER BY o.id`,
    [limit, inFlight],
  );
  return rows;
}

/**
 * Refresh the planner statistics of the delivery queue. A backlog that grew faster than autovacuum
 * analyzes it (a burst, or a relay that was down) would otherwise be planned as if it were tiny.
 */
export async function analyzeQueue(db: pg.ClientBase | pg.Pool, schema: string): Promise<void> {
  await db.query(`ANALYZE ${ident(schema)}.outbox_delivery`);
}
