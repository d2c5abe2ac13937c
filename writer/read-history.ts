import type pg from 'pg';
import { ident } from '../core/pg';

/** The permanent history of one aggregate, read from the outbox table (`outbox audit history` and the console). */
export interface HistoryEvent {
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: number;
  event_type: string;
  schema_version: number;
  occurred_at: Date;
  recorded_at: Date;
  actor_id: string;
  trace_id: string;
  correlation_id: string | null;
  causation_id: string | null;
  payload: Record<string, unknown>;
  hash: string;
  prev_hash: string;
  state_before?: Record<string, unknown> | null;
  state_after?: Record<string, unknown> | null;
}

export interface ReadHistoryOptions {
  /** The outbox's PostgreSQL schema. */
  schema: string;
  aggregateType: string;
  aggregateId: string;
  /** Only events that occurred at or before this time. */
  at?: Date;
}

/** Every event of an aggregate (up to `at`, when given). */
export async function readHistory(pool: Pick<pg.Pool, 'query'>, options: ReadHistoryOptions): Promise<HistoryEvent[]> {
  const { schema, aggregateType, aggregateId, at } = options;
  const s = ident(schema);
  // ORDER BY outbox.aggregate_version: the table's number; the bare name would be the text output column ('10' < '2').
  const { rows } = await pool.query<HistoryEvent & { aggregate_version: string }>(
    `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version::text, event_type, schema_version,
            occurred_at, recorded_at, actor_id, trace_id, correlation_id, causation_id, payload,
            encode(hash, 'hex') AS hash, encode(prev_hash, 'hex') AS prev_hash
       FROM ${s}.outbox
      WHERE aggregate_type = $1 AND aggregate_id = $2 AND ($3::timestamptz IS NULL OR occurred_at <= $3::timestamptz)
      ORDER BY outbox.aggregate_version`,
    [aggregateType, aggregateId, at ?? null],
  );
  return rows.map((r) => ({ ...r, aggregate_version: Number(r.aggregate_version) }));
}
