import { isDeepStrictEqual } from 'node:util';
import type { Admin } from 'kafkajs';
import type pg from 'pg';
import { listParked, type ParkedRow } from '../relay/parked';
import { readHistory, type HistoryEvent } from '../writer/read-history';
import type { OutboxConfig } from '../core/config';
import { errorMessage } from '../core/errors';
import { createKafka } from '../core/kafka';
import type { Logger } from '../core/logger';
import { readBacklog, type BacklogStats } from '../core/metrics';
import { ident } from '../core/pg';
import { redact } from '../core/redact';
import { registryRequest } from '../core/registry';
import { verifyChain, type VerifyChainResult } from '../writer/index';

/**
 * What the console shows, read from PostgreSQL, Kafka and the registry. Each part of a page is read on
 * its own: a part that fails carries `ok: false` and the reason, and the rest is still shown. The
 * outbox figures come from core/metrics readBacklog (as `outbox status`), parked events from
 * relay/parked listParked, histories from writer/read-history readHistory and chains from the
 * writer's verifyChain; the rest are small read-only queries here.
 */

/** Advisory-lock class of relay leadership (`pg_try_advisory_lock(0x6b6f, hashtext(<schema>))`) and the leader connection's application_name. */
export const RELAY_LOCK_CLASS = 0x6b6f;
export const RELAY_LEADER_APPLICATION = 'kafka-outbox-relay-leader';

export type Part<T> = ({ ok: true } & T) | { ok: false; error: string };

export interface RelayLeader {
  pid: number;
  applicationName: string | null;
  clientAddr: string | null;
  /** When the leader's connection (and so, at the latest, its leadership) started. */
  since: string | null;
}

export interface PartitionProgress {
  topic: string;
  partition: number;
  /** Last applied offset (-1: none yet). */
  lastOffset: string;
  highWatermark?: string;
  lag?: number;
}

export interface GenerationInfo {
  generation: number;
  status: 'live' | 'building';
  pgSchema: string;
  createdAt: string;
  updatedAt?: string;
  partitions: PartitionProgress[];
  /** Messages applied / messages on the topics (building generations). */
  applied?: number;
  total?: number;
  ratio?: number;
}

export interface ProjectionInfo {
  name: string;
  liveGeneration: number;
  /** As `outbox status --json`: lag summed over partitions and `topic/partition@offset,...`. */
  lag?: number;
  lastAppliedOffset?: string;
  updatedAt?: string;
  live?: GenerationInfo;
  building: GenerationInfo[];
  note?: string;
}

export interface Overview {
  generatedAt: string;
  schema: string;
  projectorSchema: string;
  outbox: Part<BacklogStats & { oldestUndeliveredAt: string | null }>;
  publishRate: Part<{ lastMinute: number; perSecond: number; lastPublishedAt: string | null }>;
  relay: Part<{ leader: RelayLeader | null; otherConnections: number }>;
  projections: Part<{ items: ProjectionInfo[] }>;
  registry: Part<{ url: string; subjects: string[] }>;
}

export interface HeldEvent {
  aggregate_version: string;
  event_id: string;
  event_type: string;
  enqueued_at: Date;
}

export interface ParkedEvent extends ParkedRow {
  /** The first undelivered events held back behind it (at most HELD_SHOWN). */
  held: HeldEvent[];
}

export const HELD_SHOWN = 20;

export interface FieldChange {
  field: string;
  /** undefined: absent before. */
  before?: unknown;
  after?: unknown;
  changed: boolean;
}

export type ChainMark = { status: 'ok' } | { status: 'broken'; reason: string } | { status: 'unverified'; reason: string };

export interface AuditEvent extends HistoryEvent {
  changes: FieldChange[];
  chain: ChainMark;
}

export interface AuditResult {
  aggregateType: string;
  aggregateId: string;
  events: AuditEvent[];
  actors: string[];
  chain: VerifyChainResult;
}

export interface AggregateMatch {
  aggregate_id: string;
  version: string;
}

/**
 * The generic per-field diff of an aggregate's history: the state before an event is the shallow
 * merge of the payloads before it (a field keeps the value of the last event that carried it); each
 * payload field is shown with its value before and after, `changed` when they differ.
 */
export function payloadChanges(events: Array<Pick<HistoryEvent, 'payload'>>): FieldChange[][] {
  let state: Record<string, unknown> = {};
  return events.map((e) => {
    const payload = e.payload !== null && typeof e.payload === 'object' && !Array.isArray(e.payload) ? e.payload : {};
    const changes = Object.keys(payload).map((field): FieldChange => {
      const had = Object.prototype.hasOwnProperty.call(state, field);
      const after = payload[field];
      return { field, ...(had ? { before: state[field] } : {}), after, changed: !had || !isDeepStrictEqual(state[field], after) };
    });
    state = { ...state, ...payload };
    return changes;
  });
}

/** Per-event marks from one verifyChain of the aggregate: ok before the first broken link, broken at it, unverified after it. */
export function chainMarks(events: Array<Pick<HistoryEvent, 'aggregate_version'>>, result: VerifyChainResult): ChainMark[] {
  const broken = result.firstBroken;
  return events.map((e): ChainMark => {
    if (result.ok || !broken) return { status: 'ok' };
    if (e.aggregate_version < broken.version) return { status: 'ok' };
    if (e.aggregate_version === broken.version) return { status: 'broken', reason: broken.reason };
    return { status: 'unverified', reason: `after the broken link at version ${broken.version}` };
  });
}

function fail(err: unknown): { ok: false; error: string } {
  return { ok: false, error: redact(errorMessage(err)) };
}

export interface ConsoleDataOptions {
  config: OutboxConfig;
  pool: pg.Pool;
  logger: Logger;
}

export class ConsoleData {
  private readonly s: string;
  private readonly p: string;
  private admin: Admin | undefined;
  private adminConnecting: Promise<Admin> | undefined;
  private overviewCache: { at: number; value: Promise<Overview> } | undefined;

  constructor(private readonly options: ConsoleDataOptions) {
    this.s = ident(options.config.schema);
    this.p = ident(options.config.projector.schema);
  }

  private get pool(): pg.Pool {
    return this.options.pool;
  }

  /** The overview, computed at most once a second however many browsers poll it. */
  overview(): Promise<Overview> {
    const now = Date.now();
    if (!this.overviewCache || now - this.overviewCache.at > 1000) {
      this.overviewCache = { at: now, value: this.readOverview() };
    }
    return this.overviewCache.value;
  }

  /** Forget the cached overview, so the next poll shows what an action just changed. */
  invalidateOverview(): void {
    this.overviewCache = undefined;
  }

  private async readOverview(): Promise<Overview> {
    const { config } = this.options;
    const [outbox, publishRate, relay, projections, registry] = await Promise.all([
      readBacklog((sql, params) => this.pool.query(sql, params), config.schema).then(
        (b) => ({ ok: true as const, ...b, oldestUndeliveredAt: b.oldestUndeliveredAt?.toISOString() ?? null }),
        fail,
      ),
      this.publishRate().then((r) => ({ ok: true as const, ...r }), fail),
      this.relayLeader().then((r) => ({ ok: true as const, ...r }), fail),
      this.projections().then((items) => ({ ok: true as const, items }), fail),
      this.subjects().then((subjects) => ({ ok: true as const, url: config.registry.url, subjects }), fail),
    ]);
    return {
      generatedAt: new Date().toISOString(),
      schema: config.schema,
      projectorSchema: config.projector.schema,
      outbox: outbox as Overview['outbox'],
      publishRate,
      relay,
      projections,
      registry,
    };
  }

  /** Events published (delivered with a topic) in the last minute. */
  async publishRate(): Promise<{ lastMinute: number; perSecond: number; lastPublishedAt: string | null }> {
    const { rows } = await this.pool.query<{ n: string; last: Date | null }>(
      `SELECT (SELECT count(*) FROM ${this.s}.outbox_delivery WHERE delivered_at > now() - interval '60 seconds' AND topic IS NOT NULL)::text AS n,
              (SELECT max(delivered_at) FROM ${this.s}.outbox_delivery WHERE delivered_at IS NOT NULL) AS last`,
    );
    const n = Number(rows[0]?.n ?? 0);
    return { lastMinute: n, perSecond: Math.round((n / 60) * 10) / 10, lastPublishedAt: rows[0]?.last?.toISOString() ?? null };
  }

  /** The session holding the relays' leader lock for this schema, and how many other relay leader connections wait. */
  async relayLeader(): Promise<{ leader: RelayLeader | null; otherConnections: number }> {
    const { rows } = await this.pool.query<{ pid: number; application_name: string | null; client_addr: string | null; backend_start: Date | null }>(
      `SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = $1 AND l.objid::bigint = (hashtext($2)::bigint & 4294967295)`,
      [RELAY_LOCK_CLASS, this.options.config.schema],
    );
    const l = rows[0];
    const { rows: others } = await this.pool.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND pid <> $2`,
      [RELAY_LEADER_APPLICATION, l?.pid ?? 0],
    );
    return {
      leader: l ? { pid: l.pid, applicationName: l.application_name, clientAddr: l.client_addr, since: l.backend_start?.toISOString() ?? null } : null,
      otherConnections: Number(others[0]?.n ?? 0),
    };
  }

  async subjects(): Promise<string[]> {
    const { registry } = this.options.config;
    if (registry.url === '') throw new Error('SCHEMA_REGISTRY_URL is not set');
    const res = await registryRequest(registry, { method: 'GET', path: '/subjects', timeoutMs: 3000 });
    if (res.status !== 200 || !Array.isArray(res.body)) throw new Error(`schema registry at ${registry.url} answered GET /subjects with HTTP ${res.status}`);
    return (res.body as unknown[]).map(String).sort();
  }

  /** A Kafka admin client kept for the console's lifetime (connected on first use, again after a failure). */
  private async kafkaAdmin(): Promise<Admin> {
    if (this.admin) return this.admin;
    if (!this.adminConnecting) {
      const { config, logger } = this.options;
      if (config.kafka.brokers.length === 0) throw new Error('KAFKA_BROKERS is not set');
      const admin = createKafka(config.kafka, logger, 'console', { retries: 1 }).admin();
      this.adminConnecting = admin.connect().then(
        () => {
          this.admin = admin;
          this.adminConnecting = undefined;
          return admin;
        },
        (err: unknown) => {
          this.adminConnecting = undefined;
          throw err;
        },
      );
    }
    return this.adminConnecting;
  }

  private async highWatermarks(topics: string[]): Promise<Map<string, string>> {
    const high = new Map<string, string>();
    if (topics.length === 0) return high;
    const admin = await this.kafkaAdmin();
    try {
      for (const topic of topics) {
        for (const p of await admin.fetchTopicOffsets(topic)) high.set(`${topic}/${p.partition}`, p.high);
      }
    } catch (err) {
      // Drop the client: the next call connects afresh (a restarted broker, a changed leader).
      this.admin = undefined;
      await admin.disconnect().catch(() => undefined);
      throw err;
    }
    return high;
  }

  /**
   * Every projection: its live generation with lag per partition, and generations being built by a
   * rebuild with their progress (their checkpoints against the live generation's topics' high watermarks).
   */
  async projections(): Promise<ProjectionInfo[]> {
    const p = this.p;
    const [{ rows: projections }, { rows: generations }, { rows: offsets }] = await Promise.all([
      this.pool.query<{ projection: string; live_generation: number }>(`SELECT projection, live_generation FROM ${p}.projector_projections ORDER BY projection`),
      this.pool.query<{ projection: string; generation: number; pg_schema: string; status: 'live' | 'building'; created_at: Date }>(
        `SELECT projection, generation, pg_schema, status, created_at FROM ${p}.projector_generations WHERE status IN ('live', 'building') ORDER BY projection, generation`,
      ),
      this.pool.query<{ projection: string; generation: number; topic: string; partition: number; last_offset: string; updated_at: Date }>(
        `SELECT f.projection, f.generation, f.topic, f.partition, f.last_offset::text, f.updated_at
           FROM ${p}.projector_offsets f JOIN ${p}.projector_generations g ON g.projection = f.projection AND g.generation = f.generation
          WHERE g.status IN ('live', 'building') ORDER BY f.projection, f.generation, f.topic, f.partition`,
      ),
    ]);
    let high: Map<string, string> | undefined;
    let note: string | undefined;
    try {
      high = await this.highWatermarks([...new Set(offsets.map((o) => o.topic))]);
    } catch (err) {
      note = `lag unknown: Kafka: ${redact(errorMessage(err))}`;
    }
    const lagOf = (topic: string, partition: number, last: string): { highWatermark?: string; lag?: number } => {
      const hw = high?.get(`${topic}/${partition}`);
      if (hw === undefined) return {};
      return { highWatermark: hw, lag: Math.max(0, Number(BigInt(hw) - BigInt(last) - 1n)) };
    };
    return projections.map((proj): ProjectionInfo => {
      const gens = generations.filter((g) => g.projection === proj.projection);
      const info = (g: (typeof gens)[number]): GenerationInfo => {
        const mine = offsets.filter((o) => o.projection === g.projection && o.generation === g.generation);
        const updated = mine.reduce<Date | undefined>((a, o) => (a === undefined || o.updated_at > a ? o.updated_at : a), undefined);
        return {
          generation: g.generation,
          status: g.status,
          pgSchema: g.pg_schema,
          createdAt: g.created_at.toISOString(),
          ...(updated ? { updatedAt: updated.toISOString() } : {}),
          partitions: mine.map((o) => ({ topic: o.topic, partition: o.partition, lastOffset: o.last_offset, ...lagOf(o.topic, o.partition, o.last_offset) })),
        };
      };
      const liveRow = gens.find((g) => g.generation === proj.live_generation);
      const live = liveRow ? info(liveRow) : undefined;
      const building = gens
        .filter((g) => g.status === 'building')
        .map((g) => {
          const b = info(g);
          // Progress against every partition the live generation reads (a shadow starts with none of its own).
          if (high && live) {
            let applied = 0;
            let total = 0;
            for (const lp of live.partitions) {
              const hw = Number(high.get(`${lp.topic}/${lp.partition}`) ?? 0);
              const mine = b.partitions.find((x) => x.topic === lp.topic && x.partition === lp.partition);
              total += hw;
              applied += mine ? Math.min(hw, Number(mine.lastOffset) + 1) : 0;
            }
            Object.assign(b, { applied, total, ratio: total > 0 ? applied / total : 1 });
          }
          return b;
        });
      const livePartitions = live?.partitions ?? [];
      return {
        name: proj.projection,
        liveGeneration: proj.live_generation,
        ...(high
          ? { lag: livePartitions.reduce((a, x) => a + (x.lag ?? 0), 0), lastAppliedOffset: livePartitions.map((x) => `${x.topic}/${x.partition}@${x.lastOffset}`).join(',') }
          : {}),
        ...(live?.updatedAt ? { updatedAt: live.updatedAt } : {}),
        ...(live ? { live } : {}),
        building,
        ...(note ? { note } : {}),
      };
    });
  }

  /** Parked events (as `outbox parked list`) with the first events held back behind each. */
  async parked(limit = 200): Promise<ParkedEvent[]> {
    const rows = await listParked(this.pool, this.options.config.schema, limit);
    if (rows.length === 0) return [];
    const { rows: held } = await this.pool.query<HeldEvent & { aggregate_type: string; aggregate_id: string }>(
      `SELECT aggregate_type, aggregate_id, aggregate_version, event_id, event_type, enqueued_at FROM (
         SELECT d.aggregate_type, d.aggregate_id, d.aggregate_version::text, o.event_id::text, o.event_type, d.enqueued_at,
                row_number() OVER (PARTITION BY d.aggregate_type, d.aggregate_id ORDER BY d.id) AS n
           FROM ${this.s}.outbox_delivery d JOIN ${this.s}.outbox o ON o.id = d.id
          WHERE d.delivered_at IS NULL AND d.parked_at IS NULL
            AND (d.aggregate_type, d.aggregate_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))) h
        WHERE n <= $3 ORDER BY aggregate_type, aggregate_id, aggregate_version::bigint`,
      [rows.map((r) => r.aggregate_type), rows.map((r) => r.aggregate_id), HELD_SHOWN],
    );
    return rows.map((r) => ({
      ...r,
      held: held
        .filter((h) => h.aggregate_type === r.aggregate_type && h.aggregate_id === r.aggregate_id && BigInt(h.aggregate_version) > BigInt(r.aggregate_version))
        .map(({ aggregate_type: _t, aggregate_id: _i, ...h }) => h),
    }));
  }

  /** Aggregate types that have events (a skip scan of outbox_aggregates' primary key). */
  async aggregateTypes(): Promise<string[]> {
    const { rows } = await this.pool.query<{ aggregate_type: string }>(
      `WITH RECURSIVE t(aggregate_type) AS (
         (SELECT aggregate_type FROM ${this.s}.outbox_aggregates ORDER BY aggregate_type LIMIT 1)
         UNION ALL
         SELECT (SELECT a.aggregate_type FROM ${this.s}.outbox_aggregates a WHERE a.aggregate_type > t.aggregate_type ORDER BY a.aggregate_type LIMIT 1)
           FROM t WHERE t.aggregate_type IS NOT NULL)
       SELECT aggregate_type FROM t WHERE aggregate_type IS NOT NULL LIMIT 200`,
    );
    return rows.map((r) => r.aggregate_type);
  }

  /** Aggregates of a type whose id starts with `prefix` (at most `limit`). */
  async findAggregates(type: string, prefix: string, limit = 50): Promise<AggregateMatch[]> {
    const { rows } = await this.pool.query<AggregateMatch>(
      `SELECT aggregate_id, version::text FROM ${this.s}.outbox_aggregates WHERE aggregate_type = $1 AND starts_with(aggregate_id, $2) ORDER BY aggregate_id LIMIT $3`,
      [type, prefix, limit],
    );
    return rows;
  }

  /** One aggregate's history with per-field changes and the chain verified per event; undefined when it has no events. */
  async audit(type: string, id: string): Promise<AuditResult | undefined> {
    // readHistory orders by its text column aggregate_version ('10' before '2'): order by number here.
    const history = (await readHistory(this.pool, { schema: this.options.config.schema, aggregateType: type, aggregateId: id })).sort(
      (a, b) => a.aggregate_version - b.aggregate_version,
    );
    if (history.length === 0) return undefined;
    const client = await this.pool.connect();
    let chain: VerifyChainResult;
    try {
      chain = await verifyChain(client, { schema: this.options.config.schema, aggregate: { type, id } });
    } finally {
      client.release();
    }
    const changes = payloadChanges(history);
    const marks = chainMarks(history, chain);
    return {
      aggregateType: type,
      aggregateId: id,
      events: history.map((e, i) => ({ ...e, changes: changes[i] ?? [], chain: marks[i] ?? { status: 'ok' } })),
      actors: [...new Set(history.map((e) => e.actor_id))],
      chain,
    };
  }

  async close(): Promise<void> {
    const admin = this.admin ?? (await this.adminConnecting?.catch(() => undefined));
    this.admin = undefined;
    await admin?.disconnect().catch(() => undefined);
  }
}
