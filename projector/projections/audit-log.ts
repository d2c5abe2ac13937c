import type { Counter } from 'prom-client';
import type { SchemaCatalog } from '../../schemas/catalog';
import { errorMessage } from '../../core/errors';
import { canonicalJsonb } from '../../event/canonical';
import { verifyEventLink, ZERO_HASH } from '../../event/hash-chain';
import { takeSnapshot } from '../load-aggregate';
import type { AggregateReducer, ApplyContext, BatchRejection, EventHandler, ProjectedEvent, Projection } from '../types';

export type ChainStatus = 'ok' | 'broken' | 'unverified';

export interface AuditLogOptions {
  topics: string[];
  name?: string;
  /** Local schema catalog: re-reads events written with an older schema version to verify their hash. */
  catalog?: SchemaCatalog;
  /** Aggregate reducers: a snapshot is stored every `snapshotEvery` events of their aggregates. */
  reducers?: AggregateReducer[];
  /** Counted per broken link (alert metric). */
  chainBreaks?: Counter<'projection'>;
}

interface Last {
  version: number;
  hash: Buffer;
}

/** The payload exactly as the writer stored it (its schema version), for the hash. */
function writerPayload(pe: ProjectedEvent, catalog: SchemaCatalog | undefined): unknown {
  const e = pe.event;
  if (e.writerSchemaVersion === e.schemaVersion) return e.payload;
  const entry = catalog?.get(e.eventType, e.writerSchemaVersion);
  if (!entry || !pe.source.value) return undefined;
  try {
    return (entry.type.fromBuffer(pe.source.value.subarray(5)) as { payload: unknown }).payload;
  } catch {
    return undefined;
  }
}

/** Check one event's link: its hash over its own fields, and its prev_hash against the previous stored event. */
export function checkLink(pe: ProjectedEvent, previous: Last | undefined, catalog: SchemaCatalog | undefined): { status: ChainStatus; problem: string | null } {
  const e = pe.event;
  if (previous && previous.version >= e.aggregateVersion) {
    return { status: 'broken', problem: `version ${e.aggregateVersion} arrived after version ${previous.version} of the same aggregate (fork or replay with a new event_id)` };
  }
  const payload = writerPayload(pe, catalog);
  if (payload === undefined) return { status: 'unverified', problem: `payload of ${e.eventType} v${e.writerSchemaVersion} could not be re-read in its writer schema` };
  const linked = e.aggregateVersion === 1 ? ZERO_HASH : previous && previous.version === e.aggregateVersion - 1 ? previous.hash : null;
  try {
    const r = verifyEventLink(linked, {
      eventId: e.eventId,
      aggregateType: e.aggregateType,
      aggregateId: e.aggregateId,
      aggregateVersion: e.aggregateVersion,
      eventType: e.eventType,
      schemaVersion: e.writerSchemaVersion,
      occurredAt: e.occurredAt,
      actorId: e.actorId ?? '',
      traceId: e.traceId ?? '',
      correlationId: e.correlationId,
      causationId: e.causationId,
      traceparent: e.traceparent,
      payload: canonicalJsonb(payload),
      hash: e.hash,
      prevHash: e.prevHash,
    });
    if (!r.ok) return { status: 'broken', problem: r.reason ?? 'link does not verify' };
    if (linked === null) return { status: 'unverified', problem: `previous event (version ${e.aggregateVersion - 1}) is not in the audit log: only self-consistency checked` };
    return { status: 'ok', problem: null };
  } catch (err) {
    return { status: 'broken', problem: `link not verifiable: ${errorMessage(err)}` };
  }
}

const COLUMNS = `event_id text, aggregate_type text, aggregate_id text, aggregate_version bigint, event_type text, schema_version integer,
  writer_schema_version integer, occurred_at timestamptz, occurred_at_micros bigint, actor_id text, trace_id text, correlation_id text,
  causation_id text, traceparent text, payload jsonb, hash text, prev_hash text, chain_status text, chain_problem text, schema_id integer,
  topic text, kafka_partition integer, kafka_offset bigint, headers jsonb`;

function headerJson(h: ProjectedEvent['source']['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    const first = Array.isArray(v) ? v[0] : v;
    if (first !== undefined) out[k] = Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  }
  return out;
}

/**
 * `audit_log`: every event with all its metadata, append-only (UPDATE/DELETE/TRUNCATE refused), each
 * hash-chain link verified on arrival. A broken link is stored with chain_status 'broken' and the
 * problem, logged at error level as an alert and counted; a link that cannot be checked against its
 * predecessor (gap) is stored as 'unverified', never as 'ok'. Also takes the aggregate snapshots.
 */
export function createAuditLogProjection(options: AuditLogOptions): Projection {
  const name = options.name ?? 'audit_log';
  const reducers = new Map((options.reducers ?? []).map((r) => [r.aggregateType, r]));

  async function applyBatch(events: ProjectedEvent[], ctx: ApplyContext): Promise<BatchRejection[]> {
    if (events.length === 0) return [];
    const t = ctx.table('audit_log');
    const keyOf = (a: string, b: string): string => `${a}\u0000${b}`;
    const aggs = new Map<string, { type: string; id: string }>();
    for (const pe of events) aggs.set(keyOf(pe.event.aggregateType, pe.event.aggregateId), { type: pe.event.aggregateType, id: pe.event.aggregateId });
    const list = [...aggs.values()];
    const { rows } = await ctx.client.query<{ aggregate_type: string; aggregate_id: string; aggregate_version: string; hash: Buffer }>(
      // The head of each aggregate: one index probe per aggregate (not every version it has).
      `SELECT a.aggregate_type, a.aggregate_id, h.aggregate_version, h.hash FROM unnest($1::text[], $2::text[]) AS a(aggregate_type, aggregate_id)
        CROSS JOIN LATERAL (SELECT aggregate_version, hash FROM ${t} x WHERE x.aggregate_type = a.aggregate_type AND x.aggregate_id = a.aggregate_id
                            ORDER BY aggregate_version DESC LIMIT 1) h`,
      [list.map((a) => a.type), list.map((a) => a.id)],
    );
    const last = new Map<string, Last>(rows.map((r) => [keyOf(r.aggregate_type, r.aggregate_id), { version: Number(r.aggregate_version), hash: r.hash }]));
    const before = new Map<string, number>([...last].map(([k, v]) => [k, v.version]));
    const data: Record<string, unknown>[] = [];
    for (const pe of events) {
      const e = pe.event;
      const k = keyOf(e.aggregateType, e.aggregateId);
      const link = checkLink(pe, last.get(k), options.catalog);
      if (link.status === 'broken') {
        ctx.logger.error(
          {
            alert: 'chain_broken',
            projection: ctx.projection,
            eventId: e.eventId,
            aggregateType: e.aggregateType,
            aggregateId: e.aggregateId,
            aggregateVersion: e.aggregateVersion,
            problem: link.problem,
          },
          'hash chain link broken',
        );
        options.chainBreaks?.inc({ projection: ctx.projection });
      } else if (link.status === 'unverified') {
        ctx.logger.warn({ projection: ctx.projection, eventId: e.eventId, problem: link.problem }, 'hash chain link not fully verified');
      }
      const prev = last.get(k);
      if (!prev || prev.version < e.aggregateVersion) last.set(k, { version: e.aggregateVersion, hash: e.hash });
      data.push({
        event_id: e.eventId,
        aggregate_type: e.aggregateType,
        aggregate_id: e.aggregateId,
        aggregate_version: e.aggregateVersion,
        event_type: e.eventType,
        schema_version: e.schemaVersion,
        writer_schema_version: e.writerSchemaVersion,
        occurred_at: e.occurredAt.toISOString(),
        occurred_at_micros: e.occurredAtMicros,
        actor_id: e.actorId,
        trace_id: e.traceId,
        correlation_id: e.correlationId,
        causation_id: e.causationId,
        traceparent: e.traceparent,
        payload: e.payload,
        hash: e.hash.toString('hex'),
        prev_hash: e.prevHash.toString('hex'),
        chain_status: link.status,
        chain_problem: link.problem,
        schema_id: pe.schemaId,
        topic: pe.source.topic,
        kafka_partition: pe.source.partition,
        kafka_offset: pe.source.offset,
        headers: headerJson(pe.source.headers),
      });
    }
    await ctx.client.query(
      `INSERT INTO ${t} (event_id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version, writer_schema_version,
         occurred_at, occurred_at_micros, actor_id, trace_id, correlation_id, causation_id, traceparent, payload, hash, prev_hash,
         chain_status, chain_problem, schema_id, topic, kafka_partition, kafka_offset, headers)
       SELECT event_id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version, writer_schema_version,
         occurred_at, occurred_at_micros, actor_id, trace_id, correlation_id, causation_id, traceparent, payload,
         decode(hash, 'hex'), decode(prev_hash, 'hex'), chain_status, chain_problem, schema_id, topic, kafka_partition, kafka_offset, headers
       FROM json_to_recordset($1::json) AS x(${COLUMNS})`,
      [JSON.stringify(data)],
    );
    // Snapshots: one per `snapshotEvery` versions of aggregates that have a reducer.
    const n = ctx.snapshotEvery;
    for (const [k, a] of aggs) {
      const reducer = reducers.get(a.type);
      const now = last.get(k);
      if (!reducer || !now) continue;
      // Every boundary the batch crossed, in order (each one starts from the previous snapshot).
      for (let b = (Math.floor((before.get(k) ?? 0) / n) + 1) * n; b <= now.version; b += n) {
        await takeSnapshot(ctx.client, {
          outboxSchema: ctx.outboxSchema,
          reducer,
          aggregateId: a.id,
          version: b,
          eventsTable: t,
          projection: ctx.projection,
          generation: ctx.generation,
        });
      }
    }
    return [];
  }

  const perEvent: EventHandler = async (e, ctx) => {
    await applyBatch([e], ctx);
  };

  return {
    name,
    topics: options.topics,
    tables: ['audit_log'],
    async createTables(client, s) {
      await client.query(`CREATE TABLE ${s}.audit_log (
        event_id text PRIMARY KEY,
        aggregate_type text NOT NULL, aggregate_id text NOT NULL, aggregate_version bigint NOT NULL,
        event_type text NOT NULL, schema_version integer NOT NULL, writer_schema_version integer NOT NULL,
        occurred_at timestamptz NOT NULL, occurred_at_micros bigint NOT NULL,
        actor_id text, trace_id text, correlation_id text, causation_id text, traceparent text,
        payload jsonb NOT NULL, hash bytea NOT NULL, prev_hash bytea NOT NULL,
        chain_status text NOT NULL CHECK (chain_status IN ('ok', 'broken', 'unverified')), chain_problem text,
        schema_id integer NOT NULL, topic text NOT NULL, kafka_partition integer NOT NULL, kafka_offset bigint NOT NULL,
        headers jsonb NOT NULL, projected_at timestamptz NOT NULL DEFAULT now())`);
      await client.query(`CREATE INDEX ON ${s}.audit_log (aggregate_type, aggregate_id, aggregate_version)`);
      await client.query(`CREATE INDEX ON ${s}.audit_log (occurred_at)`);
      await client.query(`CREATE INDEX ON ${s}.audit_log (chain_status) WHERE chain_status <> 'ok'`);
      await client.query(`CREATE FUNCTION ${s}.audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP USING ERRCODE = 'restrict_violation'; END $$`);
      await client.query(`CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON ${s}.audit_log FOR EACH ROW EXECUTE FUNCTION ${s}.audit_log_append_only()`);
      await client.query(`CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON ${s}.audit_log FOR EACH STATEMENT EXECUTE FUNCTION ${s}.audit_log_append_only()`);
    },
    handlers: new Proxy({}, { get: () => perEvent }) as Record<string, EventHandler>,
    applyBatch,
    compareColumns: {
      audit_log: [
        'event_id',
        'aggregate_type',
        'aggregate_id',
        'aggregate_version',
        'event_type',
        'schema_version',
        'payload',
        'hash',
        'prev_hash',
        'chain_status',
        'topic',
        'kafka_partition',
        'kafka_offset',
      ],
    },
  };
}
