import type pg from 'pg';
import { OutboxError } from '../core/errors';
import { ident } from '../core/pg';
import { userReducer } from './projections/users';
import type { AggregateReducer, ReducibleEvent } from './types';

/** Reducers of the built-in aggregate types. */
export const builtInReducers: AggregateReducer[] = [userReducer as AggregateReducer];

type Queryable = Pick<pg.ClientBase, 'query'>;

export interface LoadAggregateOptions {
  /** Reducer to fold with (default: the built-in one of the aggregate type). */
  reducer?: AggregateReducer;
  /** Outbox schema holding projector_snapshots and the audit_log view (default 'public'). */
  outboxSchema?: string;
  /** Quoted table to read events from (default the audit_log view of the outbox schema). */
  eventsTable?: string;
  /** Ignore snapshots (full replay). */
  useSnapshots?: boolean;
  /** Fold only up to this version. */
  upToVersion?: number;
}

export interface LoadedAggregate<S = unknown> {
  aggregateType: string;
  aggregateId: string;
  state: S;
  /** aggregate_version of the last folded event (0 when there is none). */
  version: number;
  /** Version of the snapshot the fold started from (null: from the first event). */
  snapshotVersion: number | null;
  /** Events folded after the snapshot. */
  eventsReplayed: number;
}

interface EventRow {
  event_id: string;
  event_type: string;
  aggregate_version: string;
  occurred_at: Date;
  payload: unknown;
}

/**
 * The current state of an aggregate: its latest snapshot written by this reducer version (snapshots of
 * other reducer versions are ignored) plus the events after it, read from the audit_log.
 */
export async function loadAggregate<S = unknown>(db: Queryable, aggregateType: string, aggregateId: string, options: LoadAggregateOptions = {}): Promise<LoadedAggregate<S>> {
  const reducer = (options.reducer ?? builtInReducers.find((r) => r.aggregateType === aggregateType)) as AggregateReducer<S> | undefined;
  if (!reducer) throw new OutboxError('NOT_FOUND', `no reducer for aggregate type ${aggregateType}`, { details: { aggregateType } });
  const o = ident(options.outboxSchema ?? 'public');
  const events = options.eventsTable ?? `${o}.${ident('audit_log')}`;
  const upTo = options.upToVersion ?? Number.MAX_SAFE_INTEGER;
  let state = reducer.initial(aggregateId);
  let from = 0;
  let snapshotVersion: number | null = null;
  if (options.useSnapshots ?? true) {
    const snap = await db.query<{ aggregate_version: string; state: S }>(
      `SELECT aggregate_version, state FROM ${o}.projector_snapshots
        WHERE aggregate_type = $1 AND aggregate_id = $2 AND reducer_version = $3 AND aggregate_version <= $4
        ORDER BY aggregate_version DESC LIMIT 1`,
      [aggregateType, aggregateId, reducer.version, upTo],
    );
    if (snap.rows[0]) {
      state = snap.rows[0].state;
      from = Number(snap.rows[0].aggregate_version);
      snapshotVersion = from;
    }
  }
  const { rows } = await db.query<EventRow>(
    `SELECT event_id, event_type, aggregate_version, occurred_at, payload FROM ${events}
      WHERE aggregate_type = $1 AND aggregate_id = $2 AND aggregate_version > $3 AND aggregate_version <= $4
      ORDER BY aggregate_version`,
    [aggregateType, aggregateId, from, upTo],
  );
  let version = from;
  for (const r of rows) {
    const e: ReducibleEvent = {
      eventId: r.event_id,
      eventType: r.event_type,
      aggregateType,
      aggregateId,
      aggregateVersion: Number(r.aggregate_version),
      occurredAt: r.occurred_at,
      payload: r.payload,
    };
    state = reducer.apply(state, e);
    version = e.aggregateVersion;
  }
  return { aggregateType, aggregateId, state, version, snapshotVersion, eventsReplayed: rows.length };
}

/**
 * Fold an event (an outbox row as `outbox audit` reads it) into the state of a built-in aggregate type;
 * undefined when the type has no reducer.
 */
export function foldAggregate(
  aggregateType: string,
  state: Record<string, unknown> | null,
  event: { event_type: string; payload: Record<string, unknown>; aggregate_version: number; occurred_at: Date; event_id?: string; aggregate_id?: string },
): Record<string, unknown> | null | undefined {
  const reducer = builtInReducers.find((r) => r.aggregateType === aggregateType);
  if (!reducer) return undefined;
  const aggregateId = event.aggregate_id ?? String((state as { userId?: unknown } | null)?.userId ?? '');
  const next = reducer.apply(state ?? reducer.initial(aggregateId), {
    eventId: event.event_id ?? '',
    eventType: event.event_type,
    aggregateType,
    aggregateId,
    aggregateVersion: Number(event.aggregate_version),
    occurredAt: event.occurred_at instanceof Date ? event.occurred_at : new Date(String(event.occurred_at)),
    payload: event.payload,
  });
  return (next ?? null) as Record<string, unknown> | null;
}

/** Store a snapshot of an aggregate at `version` (idempotent). */
export async function takeSnapshot(db: Queryable, outboxSchema: string, reducer: AggregateReducer, aggregateId: string, version: number, eventsTable: string): Promise<void> {
  const loaded = await loadAggregate(db, reducer.aggregateType, aggregateId, { reducer, outboxSchema, eventsTable, upToVersion: version });
  if (loaded.version !== version) return; // events missing (gap): no snapshot
  await db.query(
    `INSERT INTO ${ident(outboxSchema)}.projector_snapshots (aggregate_type, aggregate_id, aggregate_version, reducer_version, schema_version, state)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT DO NOTHING`,
    [reducer.aggregateType, aggregateId, version, reducer.version, reducer.schemaVersion, JSON.stringify(loaded.state)],
  );
}
