import type pg from 'pg';
import type { RelaySettings } from '../core/config';
import { OutboxError } from '../core/errors';
import { topicFor } from '../core/topics';
import type { DecodedEvent } from '../event/envelope';
import type { AggregateReducer, ApplyContext, BatchRejection, EventHandler, HandlerResult, ProjectedEvent, Projection, ReducibleEvent, SourceMessage } from './types';

/**
 * The public helpers a team declares its read models and aggregates with (in its config module):
 * `defineProjection` and `defineReducer`. They only describe; the projector turns a definition into a
 * running projection once the topics (from the configuration) are known.
 */

/** What a handler gets besides the event: the open transaction, its tables, where the event came from. */
export interface HandlerContext extends ApplyContext {
  /** The Kafka message the event was decoded from. */
  source: SourceMessage;
  /** Registry id of the schema the event was written with. */
  schemaId: number;
}

/**
 * A handler of one event type. It runs in the transaction that also stores the consumer offset, so its
 * writes and the checkpoint commit together. Return `{ rejected: reason }` (or throw) to send the event
 * to the dead-letter topic instead; its writes are rolled back.
 */
export type ProjectionHandler<P = Record<string, unknown>> = (event: DecodedEvent<P>, ctx: HandlerContext) => Promise<HandlerResult> | HandlerResult;

/**
 * DDL of one owned table. A string is run with the generation's schema first on the search_path, so
 * unqualified names create the table there (`CREATE TABLE invoices (...)`; more statements separated by
 * `;` are fine). A function gets the quoted schema and returns the DDL, or runs it itself on `client`.
 */
export type TableDefinition = string | ((schema: string, client: pg.ClientBase) => string | string[] | void | Promise<string | string[] | void>);

export interface ProjectionDefinition {
  /** Lower-case SQL identifier ([a-z][a-z0-9_]{0,39}): the consumer group suffix and the generation schema name. */
  name: string;
  /** Aggregate types whose topics it reads (routed as the relay routes them: topic map, template or suffix). */
  aggregateTypes?: string[];
  /** Topics it reads, in addition to those of `aggregateTypes`. */
  topics?: string[];
  /** Owned tables by name; a rebuild creates each in a new generation and swaps the reader views. */
  tables: Record<string, TableDefinition>;
  /** One handler per event type it handles (events have their latest payload shape, upcasters applied). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- public API: each projection/reducer has its own payload and state types
  handlers: Record<string, ProjectionHandler<any>>;
  /**
   * Events of a type without a handler: 'dead-letter' (the default) sends them to `<topic>.dlq` with the
   * reason; 'skip' ignores them (the offset still advances).
   */
  unhandledEventTypes?: 'dead-letter' | 'skip';
  /** Columns compared by a dry-run rebuild, by table (default all); leave out wall-clock columns. */
  compareColumns?: Record<string, string[]>;
  /**
   * Optional fast path applying a whole batch in order, with the same effect as the handlers (which are
   * used event by event when it throws). Returns the events to dead-letter, by index.
   */
  applyBatch?(events: ProjectedEvent[], ctx: ApplyContext): Promise<BatchRejection[]>;
}

/** A definition, checked, marked as one (what a config module lists under `projections`). */
export interface DefinedProjection extends ProjectionDefinition {
  readonly kind: 'projection';
}

/** A definition is resolved against the routing settings, or a ready-made Projection is used as is. */
export type ProjectionSource = DefinedProjection | Projection;

function invalid(what: string, problem: string): never {
  throw new OutboxError('CONFIG_INVALID', `${what} ${problem}`, { details: { field: what } });
}

const NAME = /^[a-z][a-z0-9_]{0,39}$/;
const TABLE = /^[a-z_][a-z0-9_]{0,62}$/;

/** Declare a projection (checked at once: a wrong name or a missing handler fails where it is defined). */
export function defineProjection(definition: ProjectionDefinition): DefinedProjection {
  const d = definition as Partial<ProjectionDefinition> | undefined;
  if (!d || typeof d !== 'object') invalid('defineProjection', 'expects an object { name, aggregateTypes | topics, tables, handlers }');
  const where = `projection ${typeof d.name === 'string' ? d.name : '?'}`;
  if (typeof d.name !== 'string' || !NAME.test(d.name)) invalid(`${where}: name`, `must match [a-z][a-z0-9_]{0,39}, got ${JSON.stringify(d.name)}`);
  if (d.aggregateTypes !== undefined && (!Array.isArray(d.aggregateTypes) || d.aggregateTypes.some((t) => typeof t !== 'string' || t === ''))) {
    invalid(`${where}: aggregateTypes`, 'must be a list of aggregate type names');
  }
  if (d.topics !== undefined && (!Array.isArray(d.topics) || d.topics.some((t) => typeof t !== 'string' || t === ''))) invalid(`${where}: topics`, 'must be a list of topic names');
  if ((d.aggregateTypes?.length ?? 0) + (d.topics?.length ?? 0) === 0) invalid(`${where}: aggregateTypes`, 'must list the aggregate types (or topics) the projection reads');
  if (!d.tables || typeof d.tables !== 'object' || Object.keys(d.tables).length === 0) invalid(`${where}: tables`, 'must name at least one owned table: { name: DDL }');
  for (const [t, ddl] of Object.entries(d.tables)) {
    if (!TABLE.test(t)) invalid(`${where}: tables.${t}`, 'table name must be a lower-case SQL identifier');
    if (typeof ddl !== 'string' && typeof ddl !== 'function') invalid(`${where}: tables.${t}`, 'must be a DDL string or a function');
  }
  if (!d.handlers || typeof d.handlers !== 'object') invalid(`${where}: handlers`, 'must be an object { EventType: async (event, ctx) => ... }');
  for (const [t, h] of Object.entries(d.handlers)) if (typeof h !== 'function') invalid(`${where}: handlers.${t}`, 'must be a function');
  if (d.applyBatch !== undefined && typeof d.applyBatch !== 'function') invalid(`${where}: applyBatch`, 'must be a function');
  if (d.unhandledEventTypes !== undefined && d.unhandledEventTypes !== 'dead-letter' && d.unhandledEventTypes !== 'skip') {
    invalid(`${where}: unhandledEventTypes`, `must be 'dead-letter' or 'skip', got ${JSON.stringify(d.unhandledEventTypes)}`);
  }
  return { ...(d as ProjectionDefinition), kind: 'projection' };
}

export function isDefinedProjection(p: unknown): p is DefinedProjection {
  return typeof p === 'object' && p !== null && (p as { kind?: unknown }).kind === 'projection';
}

function splitStatements(sql: string | string[] | void): string[] {
  if (sql === undefined) return [];
  return (Array.isArray(sql) ? sql : [sql]).map((s) => s.trim()).filter((s) => s !== '');
}

/** Run DDL with `schema` first on the search_path (restored afterwards). */
async function runInSchema(client: pg.ClientBase, schema: string, statements: string[]): Promise<void> {
  if (statements.length === 0) return;
  const { rows } = await client.query<{ search_path: string }>('SHOW search_path');
  const previous = rows[0]?.search_path ?? 'public';
  await client.query(`SET search_path TO ${schema}, ${previous}`);
  try {
    for (const s of statements) await client.query(s);
  } finally {
    await client.query(`SET search_path TO ${previous}`).catch(() => undefined);
  }
}

/** The running form of a definition: topics resolved with the relay's routing settings. */
export function projectionFromDefinition(def: DefinedProjection, routing: Pick<RelaySettings, 'topicMap' | 'topicSuffix' | 'topicTemplate'>): Projection {
  const topics = [...new Set([...(def.aggregateTypes ?? []).map((t) => topicFor(t, routing)), ...(def.topics ?? [])])];
  const skip = def.unhandledEventTypes === 'skip';
  const own: Record<string, EventHandler> = {};
  for (const [type, handler] of Object.entries(def.handlers)) {
    own[type] = async (pe: ProjectedEvent, ctx: ApplyContext) => (await handler(pe.event, { ...ctx, source: pe.source, schemaId: pe.schemaId })) ?? undefined;
  }
  const unhandled: EventHandler = async (pe) => ({ rejected: `projection ${def.name} has no handler for event type ${pe.event.eventType}` });
  const handlers = skip ? own : (new Proxy(own, { get: (target, key) => (typeof key === 'string' ? (target[key] ?? unhandled) : undefined) }) as Record<string, EventHandler>);
  return {
    name: def.name,
    topics,
    tables: Object.keys(def.tables),
    async createTables(client, schema) {
      for (const [table, ddl] of Object.entries(def.tables)) {
        try {
          if (typeof ddl === 'string') await runInSchema(client, schema, [ddl]);
          else await runInSchema(client, schema, splitStatements(await ddl(schema, client)));
        } catch (err) {
          throw new OutboxError('CONFIG_INVALID', `projection ${def.name}: tables.${table}: ${(err as Error).message}`, { cause: err, details: { projection: def.name, table } });
        }
      }
    },
    handlers,
    ...(def.applyBatch ? { applyBatch: def.applyBatch } : {}),
    ...(def.compareColumns ? { compareColumns: def.compareColumns } : {}),
  };
}

/** A projection source (definition or ready Projection) as a running Projection. */
export function toProjection(p: ProjectionSource, routing: Pick<RelaySettings, 'topicMap' | 'topicSuffix' | 'topicTemplate'>): Projection {
  return isDefinedProjection(p) ? projectionFromDefinition(p, routing) : p;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- public API: each projection/reducer has its own payload and state types
export interface ReducerDefinition<S, P = any> {
  aggregateType: string;
  /** Bump when `evolve` changes: snapshots of other versions are ignored (a rebuild after an upcaster fix makes new ones). */
  version: number;
  /** Version of the state's shape stored with each snapshot (default 1). */
  schemaVersion?: number;
  /** The state before the first event. */
  initial: S | ((aggregateId: string) => S);
  /** The state after one more event (events arrive in aggregate_version order, payloads upcast). */
  evolve(state: S, event: ReducibleEvent<P>): S;
}

/** Declare how an aggregate's events fold into its state (snapshots and loadAggregate use it). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- public API: each projection/reducer has its own payload and state types
export function defineReducer<S, P = any>(definition: ReducerDefinition<S, P>): AggregateReducer<S> {
  const d = definition as Partial<ReducerDefinition<S, P>> | undefined;
  if (!d || typeof d !== 'object') invalid('defineReducer', 'expects an object { aggregateType, version, initial, evolve }');
  const where = `reducer ${typeof d.aggregateType === 'string' ? d.aggregateType : '?'}`;
  if (typeof d.aggregateType !== 'string' || d.aggregateType === '') invalid(`${where}: aggregateType`, 'must be the aggregate type name');
  if (!Number.isInteger(d.version) || (d.version as number) < 1) invalid(`${where}: version`, `must be a whole number >= 1, got ${JSON.stringify(d.version)}`);
  if (d.schemaVersion !== undefined && (!Number.isInteger(d.schemaVersion) || d.schemaVersion < 1)) invalid(`${where}: schemaVersion`, 'must be a whole number >= 1');
  if (typeof d.evolve !== 'function') invalid(`${where}: evolve`, 'must be a function (state, event) => state');
  if (!('initial' in d)) invalid(`${where}: initial`, 'is required (a value or a function of the aggregate id)');
  const initial = d.initial;
  const evolve = d.evolve;
  return {
    aggregateType: d.aggregateType,
    version: d.version as number,
    schemaVersion: d.schemaVersion ?? 1,
    // A value is copied per aggregate so that an evolve that mutates cannot leak between aggregates.
    initial: (id) => (typeof initial === 'function' ? (initial as (aggregateId: string) => S)(id) : (structuredClone(initial) as S)),
    apply: (state, event) => evolve(state, event as ReducibleEvent<P>),
  };
}
