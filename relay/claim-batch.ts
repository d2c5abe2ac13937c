import type pg from 'pg';
import { ident } from '../core/pg';
import type { StoredEvent } from '../event/envelope';
import { storedEventColumns, storedEventFromRow, type StoredEventRow } from '../event/outbox-row';

/**
 * One outbox event waiting for delivery: the stored event, with everything needed to encode and
 * publish it; `shard` is its delivery-queue shard when it was claimed by a sharded relay.
 */
export type PendingEvent = StoredEvent & { shard?: number };

export interface ClaimOptions {
  /** The outbox schema. */
  schema: string;
  /** At most this many events. */
  limit: number;
  /**
   * At most about this many bytes of payload (as JSON text): the claim stops after the event that
   * reaches it, and always holds at least one event. Unbounded when omitted.
   */
  maxBytes?: number;
  /** Ids being sent right now (the pipelined next batch must not claim them again). */
  inFlight?: string[];
  /**
   * Claim only from these delivery-queue shards (a sharded relay's own; relay/own-shards.ts). Each
   * shard is a prefix of its own pending events, so per-aggregate order holds across owners.
   * Unset: the whole queue (the single active relay).
   */
  shards?: readonly number[];
}

/**
 * The predicate of a pending delivery `d` (of the schema `s`, quoted): not delivered, not parked, not
 * being sent ($2, the ids in flight), and its aggregate has no parked event (held back entirely until the
 * parked event is retried or skipped, so the aggregate's order holds).
 */
function pendingDelivery(s: string): string {
  return `d.delivered_at IS NULL
          AND d.parked_at IS NULL
          AND d.id <> ALL($2::bigint[])
          AND NOT EXISTS (SELECT 1 FROM ${s}.outbox_delivery p
                           WHERE p.aggregate_type = d.aggregate_type AND p.aggregate_id = d.aggregate_id
                             AND p.parked_at IS NOT NULL AND p.delivered_at IS NULL)`;
}

/**
 * The next events to publish, oldest first, from the delivery queue (no cursor: a row is pending until
 * the relay marks it delivered, so a transaction that commits late is simply picked up when it becomes
 * visible). Within one aggregate ids follow version order (the insert trigger assigns both under the
 * aggregate's lock), so `ORDER BY id` keeps per-aggregate order; an aggregate with a parked event is
 * held back entirely until the parked event is retried or skipped. The claim is bounded by count and by
 * payload bytes; a claim cut short by bytes ends at an id boundary, so order holds.
 */
export async function claimBatch(db: pg.ClientBase | pg.Pool, options: ClaimOptions): Promise<PendingEvent[]> {
  return (await claimPending(db, options)).events;
}

/** A claim, and whether it was cut short by a limit (count or bytes): then more events are probably pending. */
export interface Claim {
  events: PendingEvent[];
  full: boolean;
}

/** claimBatch, also saying whether the claim stopped at a limit. */
export async function claimPending(db: pg.ClientBase | pg.Pool, options: ClaimOptions): Promise<Claim> {
  const s = ident(options.schema);
  if (options.shards !== undefined) return claimShards(db, options, options.shards);
  // Two steps in one statement, so the plan stays cheap however large the history grows and whatever
  // the statistics say: the pending ids come from the partial index in id order (stops after `limit`),
  // then only those rows of the history are fetched by primary key. (Joining the tables directly let
  // the planner merge-join from the first id of the history, reading it all on every claim.)
  const { rows } = await db.query<StoredEventRow & { considered: string }>(
    `WITH pending AS MATERIALIZED (
       SELECT d.id FROM ${s}.outbox_delivery d
        WHERE ${pendingDelivery(s)}
        ORDER BY d.id
        LIMIT $1),
     claimed AS (
       SELECT c.*, sum(c.payload_bytes) OVER (ORDER BY c.seq) - c.payload_bytes AS bytes_before, count(*) OVER () AS considered
         FROM (SELECT ${storedEventColumns('o')}, o.id AS seq, octet_length(o.payload::text) AS payload_bytes
                 FROM ${s}.outbox o
                WHERE o.id = ANY (ARRAY(SELECT id FROM pending))) c)
     SELECT * FROM claimed WHERE $3::bigint IS NULL OR bytes_before < $3::bigint ORDER BY seq`,
    [options.limit, options.inFlight ?? [], options.maxBytes ?? null],
  );
  const considered = Number(rows[0]?.considered ?? 0);
  return { events: rows.map(storedEventFromRow), full: considered >= options.limit || rows.length < considered };
}

/**
 * The sharded claim: the same two steps, the pending ids taken per owned shard from the (shard, id)
 * index (at most `limit` from each, oldest first), then the oldest `limit` of those. The ids claimed
 * from a shard are a prefix of that shard's pending events, so an aggregate's order holds.
 */
async function claimShards(db: pg.ClientBase | pg.Pool, options: ClaimOptions, shards: readonly number[]): Promise<Claim> {
  if (shards.length === 0) return { events: [], full: false };
  const s = ident(options.schema);
  const { rows } = await db.query<StoredEventRow & { considered: string; shard: number }>(
    `WITH pending AS MATERIALIZED (
       SELECT x.id FROM pg_catalog.unnest($4::int[]) AS o(shard)
        CROSS JOIN LATERAL (
          SELECT d.id FROM ${s}.outbox_delivery d
           WHERE d.shard = o.shard AND ${pendingDelivery(s)}
           ORDER BY d.id
           LIMIT $1) x
        ORDER BY x.id
        LIMIT $1),
     sharding AS (SELECT h.shard_count FROM ${s}.outbox_sharding h),
     claimed AS (
       SELECT c.*, sum(c.payload_bytes) OVER (ORDER BY c.seq) - c.payload_bytes AS bytes_before, count(*) OVER () AS considered
         FROM (SELECT ${storedEventColumns('o')}, o.id AS seq, octet_length(o.payload::text) AS payload_bytes,
                      ${s}.outbox_shard_of(o.aggregate_type, o.aggregate_id, (SELECT shard_count FROM sharding)) AS shard
                 FROM ${s}.outbox o
                WHERE o.id = ANY (ARRAY(SELECT id FROM pending))) c)
     SELECT * FROM claimed WHERE $3::bigint IS NULL OR bytes_before < $3::bigint ORDER BY seq`,
    [options.limit, options.inFlight ?? [], options.maxBytes ?? null, shards],
  );
  const considered = Number(rows[0]?.considered ?? 0);
  return { events: rows.map((r) => ({ ...storedEventFromRow(r), shard: r.shard })), full: considered >= options.limit || rows.length < considered };
}

/**
 * Refresh the planner statistics of the delivery queue. A backlog that grew faster than autovacuum
 * analyzes it (a burst, or a relay that was down) would otherwise be planned as if it were tiny.
 * ANALYZE is the owner's: the relay's role runs it through the SECURITY DEFINER function the
 * migrations grant it.
 */
export async function analyzeQueue(db: pg.ClientBase | pg.Pool, schema: string): Promise<void> {
  await db.query(`SELECT ${ident(schema)}.outbox_analyze_delivery()`);
}
