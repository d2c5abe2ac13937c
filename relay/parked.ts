import type pg from 'pg';
import { OutboxError } from '../core/errors';
import { ident, withTransaction } from '../core/pg';

/**
 * The operator's side of park-event: list the parked events, release one for another try, or skip it.
 * Used by `outbox parked` and the console.
 */
export interface ParkedRow {
  event_id: string;
  event_type: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: string;
  attempts: number;
  parked_at: Date;
  park_reason: string | null;
  /** Later undelivered events of the same aggregate, held back behind this one. */
  held_back: string;
}

/** Parked events (oldest first) with the number of later events of their aggregate held back behind each. */
export async function listParked(pool: Pick<pg.Pool, 'query'>, schema: string, limit: number): Promise<ParkedRow[]> {
  const s = ident(schema);
  const res = await pool.query<ParkedRow>(
    `SELECT o.event_id::text, o.event_type, d.aggregate_type, d.aggregate_id, d.aggregate_version::text, d.attempts, d.parked_at, d.park_reason,
            (SELECT count(*) FROM ${s}.outbox_delivery h
              WHERE h.aggregate_type = d.aggregate_type AND h.aggregate_id = d.aggregate_id
                AND h.delivered_at IS NULL AND h.id > d.id)::text AS held_back
       FROM ${s}.outbox_delivery d JOIN ${s}.outbox o ON o.id = d.id
      WHERE d.parked_at IS NOT NULL AND d.delivered_at IS NULL
      ORDER BY d.parked_at, d.id
      LIMIT $1`,
    [limit],
  );
  return res.rows;
}

interface ParkedUpdate {
  schema: string;
  eventId: string;
  /** The SET list of the UPDATE of outbox_delivery `d` ($1 is the event id). */
  set: string;
  /** Parameters $2... of `set`. */
  params: unknown[];
}

/** Updates the parked delivery row of `eventId` in a short transaction; NOT_FOUND names why it cannot. */
async function updateParked(client: pg.ClientBase, { schema, eventId, set, params }: ParkedUpdate): Promise<Record<string, unknown>> {
  const s = ident(schema);
  return withTransaction(client, async () => {
    await client.query(`SET LOCAL lock_timeout = '5s'`);
    const res = await client.query(
      `UPDATE ${s}.outbox_delivery d SET ${set}
         FROM ${s}.outbox o
        WHERE o.id = d.id AND o.event_id = $1::uuid AND d.parked_at IS NOT NULL AND d.delivered_at IS NULL
        RETURNING o.event_id::text, o.event_type, d.aggregate_type, d.aggregate_id, d.aggregate_version::text, d.park_reason, d.delivered_at`,
      [eventId, ...params],
    );
    if (res.rowCount === 0) {
      const why = await client.query<{ delivered_at: Date | null; parked_at: Date | null }>(
        `SELECT d.delivered_at, d.parked_at FROM ${s}.outbox o LEFT JOIN ${s}.outbox_delivery d ON d.id = o.id WHERE o.event_id = $1::uuid`,
        [eventId],
      );
      const r = why.rows[0];
      const reason = !r ? 'no such event' : r.delivered_at ? 'it is already delivered' : 'it is not parked';
      throw new OutboxError('NOT_FOUND', `event ${eventId} is not a parked event: ${reason}`, { details: { eventId } });
    }
    return res.rows[0] as Record<string, unknown>;
  });
}

/** `outbox parked retry`: un-park the event; the relay tries it (and the events held behind it) again. NOT_FOUND when it is not parked. */
export function retryParked(client: pg.ClientBase, schema: string, eventId: string): Promise<Record<string, unknown>> {
  return updateParked(client, { schema, eventId, set: 'parked_at = NULL, park_reason = NULL', params: [] });
}

/**
 * `outbox parked skip`: mark the event delivered WITHOUT publishing it (park_reason becomes
 * `skipped: <reason> (<note>)`); later events of its aggregate flow again. NOT_FOUND when it is not parked.
 */
export function skipParked(client: pg.ClientBase, schema: string, eventId: string, note: string | null): Promise<Record<string, unknown>> {
  return updateParked(client, {
    schema,
    eventId,
    set: `delivered_at = now(), topic = NULL, kafka_partition = NULL, kafka_offset = NULL,
     park_reason = 'skipped: ' || COALESCE(d.park_reason, '') || COALESCE(' (' || $2::text || ')', '')`,
    params: [note],
  });
}
