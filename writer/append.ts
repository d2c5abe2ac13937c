import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { OutboxError, errorMessage } from '../core/errors';
import { ident, pgFailure } from '../core/pg';
import { activeTraceparent } from '../core/tracing';
import { assertJsonSafe } from '../event/canonical';

/** An event to append. The database assigns id, aggregate version, hash chain and commit-order data. */
export interface NewEvent {
  aggregateType: string;
  aggregateId: string;
  eventType: string;
  /** Version of the payload's schema (1 or more). */
  schemaVersion: number;
  /** A JSON object. */
  payload: Record<string, unknown>;
  /** Who caused the event (user, service, system), e.g. `user:7`. */
  actorId: string;
  /** Trace id of the request that caused it. */
  traceId: string;
  correlationId?: string | null;
  causationId?: string | null;
  /**
   * W3C traceparent of the request that caused it. Unset: the active OpenTelemetry span's context, when
   * there is one (none is made up); `null`: none.
   */
  traceparent?: string | null;
  /** Defaults to the transaction's start time (now()). Stored at millisecond precision. */
  occurredAt?: Date;
  /** Defaults to a random UUID (generated here, so that it is known before the insert). */
  eventId?: string;
}

export interface AppendedEvent {
  /** The outbox row id (bigint, as a decimal string). */
  id: string;
  eventId: string;
  aggregateType: string;
  aggregateId: string;
  aggregateVersion: number;
}

export type AppendResult =
  { status: 'appended'; events: AppendedEvent[] } | { status: 'conflict'; aggregateType: string; aggregateId: string; expectedVersion: number; currentVersion: number };

export interface AppendOptions {
  /**
   * PostgreSQL schema of the outbox table. When omitted, the table is named unqualified (`outbox`) and
   * found through the connection's search_path, exactly as the plain-SQL contract's INSERT would.
   */
  schema?: string;
  /**
   * Optimistic concurrency: the version each aggregate of the call must be at before this call
   * (0 = the aggregate has no events yet). It applies to the first event of each aggregate in the
   * call; that aggregate's further events in the call follow it directly (the head stays locked).
   */
  expectedVersion?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_$]{0,62}$/;

function invalid(index: number, field: string, problem: string): never {
  throw new OutboxError('PAYLOAD_INVALID', `events[${index}].${field} ${problem}`, { details: { index, field } });
}

function checkText(index: number, field: string, value: unknown, required: boolean): void {
  if (value === undefined || value === null) {
    if (required) invalid(index, field, 'is required');
    return;
  }
  if (typeof value !== 'string') invalid(index, field, `must be a string, got ${typeof value}`);
  if (required && value.trim() === '') invalid(index, field, 'must not be empty');
  if (value.includes('\u0000')) invalid(index, field, 'contains a NUL character, which PostgreSQL text cannot store');
  if (LONE_SURROGATE.test(value)) invalid(index, field, 'contains an unpaired UTF-16 surrogate, which is not valid Unicode');
}

/** Validate one event before it reaches the database; throws OutboxError('PAYLOAD_INVALID') naming the field. */
export function validateNewEvent(e: NewEvent, index = 0): void {
  if (e === null || typeof e !== 'object') invalid(index, '', 'must be an object');
  checkText(index, 'aggregateType', e.aggregateType, true);
  checkText(index, 'aggregateId', e.aggregateId, true);
  checkText(index, 'eventType', e.eventType, true);
  if (!Number.isInteger(e.schemaVersion) || e.schemaVersion < 1 || e.schemaVersion > 2_147_483_647) {
    invalid(index, 'schemaVersion', `must be an integer of 1 or more, got ${String(e.schemaVersion)}`);
  }
  const p: unknown = e.payload;
  if (p === null || p === undefined) invalid(index, 'payload', 'is required (a JSON object)');
  if (typeof p !== 'object' || Array.isArray(p) || p instanceof Date || Buffer.isBuffer(p)) {
    invalid(index, 'payload', `must be a JSON object, got ${Array.isArray(p) ? 'array' : p instanceof Date ? 'Date' : typeof p}`);
  }
  try {
    assertJsonSafe(p, 'payload', 0);
  } catch (err) {
    invalid(index, 'payload', errorMessage(err).replace(/^payload ?/, '') || 'is not valid JSON');
  }
  checkText(index, 'actorId', e.actorId, true);
  checkText(index, 'traceId', e.traceId, true);
  checkText(index, 'correlationId', e.correlationId, false);
  checkText(index, 'causationId', e.causationId, false);
  checkText(index, 'traceparent', e.traceparent, false);
  if (e.occurredAt !== undefined) {
    if (!(e.occurredAt instanceof Date) || !Number.isFinite(e.occurredAt.getTime())) invalid(index, 'occurredAt', 'must be a valid Date');
    const y = e.occurredAt.getUTCFullYear();
    if (y < 1 || y > 9999) invalid(index, 'occurredAt', `must be between years 1 and 9999, got ${y}`);
  }
  if (e.eventId !== undefined && (typeof e.eventId !== 'string' || !UUID.test(e.eventId))) {
    invalid(index, 'eventId', `must be a UUID, got ${JSON.stringify(e.eventId)}`);
  }
}

/** The outbox table name for an append (qualified if a schema is given). */
export function outboxTable(schema: string | undefined): string {
  if (schema === undefined) return 'outbox';
  if (!SCHEMA_NAME.test(schema)) throw new OutboxError('CONFIG_INVALID', `schema must be an SQL identifier, got "${schema}"`, { details: { field: 'schema' } });
  return `${ident(schema)}.outbox`;
}

interface PgError {
  code?: string;
  message?: string;
  detail?: string;
}

function aggKey(type: string, id: string): string {
  return `${type.length}:${type}${id}`;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Append events to the outbox inside the caller's transaction (`client` is in a transaction the caller
 * commits; outside one, the call is its own transaction). One INSERT for all events.
 *
 * Events are inserted grouped per aggregate in a fixed lock order (by aggregate type, then id; the
 * caller's order within an aggregate is kept), so that concurrent multi-aggregate appends do not
 * deadlock. The result lists the events in the caller's order.
 *
 * With `expectedVersion`, a version conflict is returned as `{ status: 'conflict', currentVersion }`
 * and nothing of this call is written; the caller's transaction stays usable (the insert runs under a
 * savepoint). Invalid input throws OutboxError('PAYLOAD_INVALID') naming the field; database failures
 * throw OutboxError('DB_UNAVAILABLE' | 'DB_REJECTED').
 */
export async function appendEvents(client: pg.ClientBase, events: NewEvent[], options: AppendOptions = {}): Promise<AppendResult> {
  const table = outboxTable(options.schema);
  const expected = options.expectedVersion;
  if (expected !== undefined && (!Number.isSafeInteger(expected) || expected < 0)) {
    throw new OutboxError('PAYLOAD_INVALID', `expectedVersion must be an integer of 0 or more, got ${String(expected)}`, { details: { field: 'expectedVersion' } });
  }
  if (!Array.isArray(events)) throw new OutboxError('PAYLOAD_INVALID', 'events must be an array', { details: { field: 'events' } });
  if (events.length === 0) return { status: 'appended', events: [] };
  events.forEach((e, i) => validateNewEvent(e, i));

  // Lock order: stable sort by (aggregate_type, aggregate_id).
  const order = events.map((e, i) => ({ e, i, eventId: (e.eventId ?? randomUUID()).toLowerCase() }));
  order.sort((a, b) => compareStrings(a.e.aggregateType, b.e.aggregateType) || compareStrings(a.e.aggregateId, b.e.aggregateId) || a.i - b.i);
  const seenIds = new Set<string>();
  const firstOfAggregate = new Set<string>();
  const cols = {
    eventId: [] as string[],
    aggregateType: [] as string[],
    aggregateId: [] as string[],
    eventType: [] as string[],
    schemaVersion: [] as number[],
    payload: [] as string[],
    actorId: [] as string[],
    traceId: [] as string[],
    correlationId: [] as (string | null)[],
    causationId: [] as (string | null)[],
    traceparent: [] as (string | null)[],
    occurredAt: [] as (string | null)[],
    expectedVersion: [] as (string | null)[],
  };
  let active: string | null | undefined; // the caller's span context, read once
  for (const { e, i, eventId } of order) {
    if (seenIds.has(eventId)) invalid(i, 'eventId', `${eventId} appears twice in this call`);
    seenIds.add(eventId);
    const key = aggKey(e.aggregateType, e.aggregateId);
    const first = !firstOfAggregate.has(key);
    firstOfAggregate.add(key);
    cols.eventId.push(eventId);
    cols.aggregateType.push(e.aggregateType);
    cols.aggregateId.push(e.aggregateId);
    cols.eventType.push(e.eventType);
    cols.schemaVersion.push(e.schemaVersion);
    cols.payload.push(JSON.stringify(e.payload));
    cols.actorId.push(e.actorId);
    cols.traceId.push(e.traceId);
    cols.correlationId.push(e.correlationId ?? null);
    cols.causationId.push(e.causationId ?? null);
    cols.traceparent.push(e.traceparent === undefined ? (active ??= activeTraceparent()) : e.traceparent);
    cols.occurredAt.push(e.occurredAt ? e.occurredAt.toISOString() : null);
    cols.expectedVersion.push(expected !== undefined && first ? String(expected) : null);
  }

  const sql = `INSERT INTO ${table} (event_id, aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id,
      correlation_id, causation_id, traceparent, occurred_at, expected_version)
    SELECT u.event_id, u.aggregate_type, u.aggregate_id, u.event_type, u.schema_version, u.payload::jsonb, u.actor_id, u.trace_id,
      u.correlation_id, u.causation_id, u.traceparent, coalesce(u.occurred_at, now()), u.expected_version
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::integer[], $6::text[], $7::text[], $8::text[],
      $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::bigint[])
      AS u(event_id, aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id,
           correlation_id, causation_id, traceparent, occurred_at, expected_version)
    RETURNING id::text AS id, event_id::text AS event_id, aggregate_version::text AS aggregate_version`;
  const params = [
    cols.eventId,
    cols.aggregateType,
    cols.aggregateId,
    cols.eventType,
    cols.schemaVersion,
    cols.payload,
    cols.actorId,
    cols.traceId,
    cols.correlationId,
    cols.causationId,
    cols.traceparent,
    cols.occurredAt,
    cols.expectedVersion,
  ];

  // A savepoint keeps the caller's transaction usable after a conflict. Only needed with expectedVersion
  // (the only expected failure); outside a transaction block there is nothing to protect.
  let savepoint = false;
  if (expected !== undefined) {
    try {
      await client.query('SAVEPOINT kafka_outbox_append');
      savepoint = true;
    } catch (err) {
      if ((err as PgError).code !== '25P01') throw pgFailure(err, 'could not set a savepoint for the append'); // 25P01: not in a transaction
    }
  }

  let rows: { id: string; event_id: string; aggregate_version: string }[];
  try {
    rows = (await client.query<{ id: string; event_id: string; aggregate_version: string }>(sql, params)).rows;
  } catch (err) {
    const e = err as PgError;
    if (e.code === 'KO409' && expected !== undefined) {
      if (savepoint) await client.query('ROLLBACK TO SAVEPOINT kafka_outbox_append; RELEASE SAVEPOINT kafka_outbox_append').catch(() => undefined);
      const current = /current_version=(\d+)/.exec(e.detail ?? '');
      const aggregate = conflictingAggregate(
        order.map((o) => o.e),
        e.message ?? '',
      );
      return {
        status: 'conflict',
        aggregateType: aggregate.aggregateType,
        aggregateId: aggregate.aggregateId,
        expectedVersion: expected,
        currentVersion: current ? Number(current[1]) : Number.NaN,
      };
    }
    if (savepoint) await client.query('ROLLBACK TO SAVEPOINT kafka_outbox_append; RELEASE SAVEPOINT kafka_outbox_append').catch(() => undefined);
    throw pgFailure(err, 'append to the outbox failed');
  }
  if (savepoint) {
    try {
      await client.query('RELEASE SAVEPOINT kafka_outbox_append');
    } catch (err) {
      throw pgFailure(err, 'could not release the append savepoint');
    }
  }

  const byEventId = new Map(rows.map((r) => [r.event_id, r]));
  const out: AppendedEvent[] = new Array<AppendedEvent>(events.length);
  for (const { e, i, eventId } of order) {
    const r = byEventId.get(eventId);
    if (!r) throw new OutboxError('INTERNAL', `the outbox insert returned no row for event ${eventId}`);
    out[i] = { id: r.id, eventId: r.event_id, aggregateType: e.aggregateType, aggregateId: e.aggregateId, aggregateVersion: Number(r.aggregate_version) };
  }
  return { status: 'appended', events: out };
}

/** The aggregate named at the end of the KO409 message ("... of aggregate <type>/<id>"); longest match wins. */
function conflictingAggregate(events: NewEvent[], message: string): { aggregateType: string; aggregateId: string } {
  let best: NewEvent | undefined;
  for (const e of events) {
    if (message.endsWith(` of aggregate ${e.aggregateType}/${e.aggregateId}`)) {
      if (!best || e.aggregateType.length + e.aggregateId.length > best.aggregateType.length + best.aggregateId.length) best = e;
    }
  }
  const chosen = best ?? events[0];
  return { aggregateType: chosen?.aggregateType ?? '', aggregateId: chosen?.aggregateId ?? '' };
}
