import type pg from 'pg';
import { DEFAULT_SCHEMA, defaultProjectorSchema } from '../core/config';
import { environmentDomain } from '../core/config-module';
import { OutboxError } from '../core/errors';
import { ident } from '../core/pg';
import type { AggregateReducer, ReducibleEvent } from './types';

type Queryable = Pick<pg.ClientBase, 'query'>;

/** The projection whose events and snapshots loadAggregate reads by default. */
export const SNAPSHOT_PROJECTION = 'audit_log';

export interface LoadAggregateOptions {
  /** Reducer to fold with; else the one of the aggregate type in `reducers`. */
  reducer?: AggregateReducer;
  /** Reducers to pick from by aggregate type (default: the config module's `reducers`, see core/config-module). */
  reducers?: AggregateReducer[];
  /** Projector schema holding projector_snapshots and the audit_log view (default `outbox_read`, the default OUTBOX_PROJECTOR_SCHEMA). */
  outboxSchema?: string;
  /** Quoted table to read events from (default the audit_log view of the outbox schema). */
  eventsTable?: string;
  /**
   * Whose snapshots to use: a projection and its generation (default: audit_log, its live generation,
   * the one its view shows). Snapshots of other generations are never used.
   */
  snapshots?: { projection: string; generation?: number };
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

function reducerFor<S>(aggregateType: string, options: Pick<LoadAggregateOptions, 'reducer' | 'reducers'>): AggregateReducer<S> {
  const reducers = options.reducer ? [] : (options.reducers ?? ((environmentDomain().config.reducers ?? []) as AggregateReducer[]));
  const reducer = options.reducer ?? reducers.find((r) => r.aggregateType === aggregateType);
  if (!reducer) {
    throw new OutboxError('NOT_FOUND', `no reducer for aggregate type ${aggregateType}: pass { reducer }, or declare one with defineReducer in the config module's reducers`, {
      details: { aggregateType },
    });
  }
  return reducer as AggregateReducer<S>;
}

/**
 * The current state of an aggregate: its latest snapshot of the live generation written by this reducer
 * version (snapshots of other reducer versions or generations are ignored) plus the events after it,
 * read from the audit_log.
 */
export async function loadAggregate<S = unknown>(db: Queryable, aggregateType: string, aggregateId: string, options: LoadAggregateOptions = {}): Promise<LoadedAggregate<S>> {
  const reducer = reducerFor<S>(aggregateType, options);
  const o = ident(options.outboxSchema ?? defaultProjectorSchema(DEFAULT_SCHEMA));
  const events = options.eventsTable ?? `${o}.${ident(SNAPSHOT_PROJECTION)}`;
  const upTo = options.upToVersion ?? Number.MAX_SAFE_INTEGER;
  const of = options.snapshots ?? { projection: SNAPSHOT_PROJECTION };
  let state = reducer.initial(aggregateId);
  let from = 0;
  let snapshotVersion: number | null = null;
  if (options.useSnapshots ?? true) {
    const snap = await db.query<{ aggregate_version: string; state: S }>(
      `SELECT aggregate_version, state FROM ${o}.projector_snapshots
        WHERE projection = $5
          AND generation = coalesce($6::int, (SELECT live_generation FROM ${o}.projector_projections WHERE projection = $5))
          AND aggregate_type = $1 AND aggregate_id = $2 AND reducer_version = $3 AND aggregate_version <= $4
        ORDER BY aggregate_version DESC LIMIT 1`,
      [aggregateType, aggregateId, reducer.version, upTo, of.projection, of.generation ?? null],
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
 * Fold an event (an outbox row as `outbox audit` reads it) into the state of its aggregate with the
 * reducer of that type among `reducers`; undefined when the type has none.
 */
export function foldAggregate(
  aggregateType: string,
  state: Record<string, unknown> | null,
  event: { event_type: string; payload: Record<string, unknown>; aggregate_version: number; occurred_at: Date; event_id?: string; aggregate_id?: string },
  reducers: AggregateReducer[],
): Record<string, unknown> | null | undefined {
  const reducer = reducers.find((r) => r.aggregateType === aggregateType);
  if (!reducer) return undefined;
  const aggregateId = event.aggregate_id ?? '';
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

export interface TakeSnapshotOptions {
  /** Projector schema holding projector_snapshots. */
  outboxSchema: string;
  reducer: AggregateReducer;
  aggregateId: string;
  /** The aggregate version the snapshot is of. */
  version: number;
  /** Quoted table of the generation's events (the audit_log table of that generation). */
  eventsTable: string;
  /** The projection and generation the events table belongs to: the snapshot's key. */
  projection: string;
  generation: number;
}

/**
 * Store a snapshot of an aggregate at `version`, keyed by the projection generation it was folded from
 * (a generation number created again replaces its old snapshots).
 */
export async function takeSnapshot(db: Queryable, options: TakeSnapshotOptions): Promise<void> {
  const { outboxSchema, reducer, aggregateId, version, eventsTable, projection, generation } = options;
  const loaded = await loadAggregate(db, reducer.aggregateType, aggregateId, { reducer, outboxSchema, eventsTable, upToVersion: version, snapshots: { projection, generation } });
  if (loaded.version !== version) return; // events missing (gap): no snapshot
  await db.query(
    `INSERT INTO ${ident(outboxSchema)}.projector_snapshots (projection, generation, aggregate_type, aggregate_id, aggregate_version, reducer_version, schema_version, state)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
     ON CONFLICT (projection, generation, aggregate_type, aggregate_id, reducer_version, aggregate_version)
     DO UPDATE SET schema_version = EXCLUDED.schema_version, state = EXCLUDED.state, created_at = now()`,
    [projection, generation, reducer.aggregateType, aggregateId, version, reducer.version, reducer.schemaVersion, JSON.stringify(loaded.state)],
  );
}
