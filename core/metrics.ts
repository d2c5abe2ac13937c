import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { DEFAULT_SCHEMA } from './config';
import type { Logger } from './logger';
import { ident } from './pg';
import { redact } from './redact';
import { errorMessage } from './errors';

/**
 * Prometheus metrics of kafka-outbox. `createMetrics` builds a fresh prom-client Registry (never the
 * global one, so tests and several components in one process do not collide) with the default Node.js
 * metrics and every outbox metric. Components set the ones they own:
 *
 * - relay: `publishedTotal`, `publishLatency`, `parkedEventsTotal`, `relayLeader`, `relayShardsOwned`, `relayFailuresTotal` (and, without a
 *   `query`, `backlog`, `oldestUndeliveredAge`, `parked`, `parkedEvents`)
 * - projector: `consumerLag`, `dlqTotal`, `rebuildProgress`
 *
 * When `query` is given, the outbox gauges (backlog, oldest age, parked, last delivery age, stalled) are
 * computed from PostgreSQL at scrape time (one query per scrape, shared by all), so they are right even
 * when no relay is running in this process.
 */
export const METRIC_NAMES = {
  backlog: 'outbox_backlog',
  oldestUndeliveredAge: 'outbox_oldest_undelivered_age_seconds',
  publishedTotal: 'outbox_published_total',
  publishLatency: 'outbox_publish_latency_seconds',
  parked: 'outbox_parked',
  parkedEvents: 'outbox_parked_events',
  parkedEventsTotal: 'outbox_parked_events_total',
  relayLeader: 'outbox_relay_leader',
  relayShardsOwned: 'outbox_relay_shards_owned',
  relayFailuresTotal: 'outbox_relay_failures_total',
  consumerLag: 'outbox_projector_consumer_lag',
  dlqTotal: 'outbox_projector_dlq_total',
  rebuildProgress: 'outbox_projector_rebuild_progress_ratio',
  lastDeliveryAge: 'outbox_last_delivery_age_seconds',
  relayStalled: 'outbox_relay_stalled',
} as const;

/** Default of `stallAfterSeconds`: events have waited, and nothing was delivered, for this long. */
export const DEFAULT_STALL_AFTER_SECONDS = 30;

/** Runs one SQL statement (a pg Pool or Client's `query` fits). */
export type QueryFn = (sql: string, params?: unknown[]) => Promise<{ rows: Array<Record<string, unknown>> }>;

export interface OutboxMetrics {
  registry: Registry;
  /** Events enqueued and not yet delivered (outbox_delivery.delivered_at IS NULL). */
  backlog: Gauge;
  /** Age in seconds of the oldest undelivered event (0 when there is none). */
  oldestUndeliveredAge: Gauge;
  /** Events published to Kafka, by topic. */
  publishedTotal: Counter<'topic'>;
  /** Seconds from enqueue (commit) to broker acknowledgement, by topic. */
  publishLatency: Histogram<'topic'>;
  /** Aggregates whose delivery is parked (parked_at set, not delivered). */
  parked: Gauge;
  /** Parked events (undelivered, waiting for `outbox parked retry|skip`); `parked` counts their aggregates. */
  parkedEvents: Gauge;
  /** Events this relay parked (poison: not encodable); each parking is also logged with event id and reason. */
  parkedEventsTotal: Counter;
  /** 1 while this relay instance is the active (leading) one for its outbox schema, 0 while it stands by. */
  relayLeader: Gauge;
  /** Shards of the delivery queue this sharded relay instance publishes now (OUTBOX_RELAY_SHARDED; 0 otherwise). */
  relayShardsOwned: Gauge;
  /** Failures of the relay loop by stage (claim, encode, publish, mark, leadership); each is retried with backoff. */
  relayFailuresTotal: Counter<'stage'>;
  /** Messages between a projection's committed offset and the high watermark, by projection/topic/partition. */
  consumerLag: Gauge<'projection' | 'topic' | 'partition'>;
  /** Events a projection sent to its dead-letter topic, by projection. */
  dlqTotal: Counter<'projection'>;
  /** Progress of a running rebuild from 0 to 1, by projection. */
  rebuildProgress: Gauge<'projection'>;
  /** Seconds since any relay last marked an event delivered (-1: never); read from PostgreSQL (with `query`). */
  lastDeliveryAge: Gauge;
  /**
   * 1 while delivery is stalled: events wait (not parked) longer than `stallAfterSeconds` and nothing has
   * been delivered for as long (brokers refusing writes, no relay running, a relay failing every batch); 0
   * otherwise. Read from PostgreSQL (with `query`), so it is right whichever relay instance is scraped.
   */
  relayStalled: Gauge;
}

export interface CreateMetricsOptions {
  /** Default Node.js process metrics (CPU, memory, event loop lag, GC). Default true. */
  defaultMetrics?: boolean;
  /** Labels added to every metric, e.g. `{ component: 'relay', instance: config.relay.instanceId }`. */
  labels?: Record<string, string>;
  /** Compute outbox_backlog, outbox_oldest_undelivered_age_seconds, outbox_parked and outbox_parked_events from PostgreSQL on scrape. */
  query?: QueryFn;
  /** PostgreSQL schema of the outbox tables (with `query`). Default OUTBOX_SCHEMA's default, `outbox`. */
  schema?: string;
  /** Where a failing scrape-time query is reported (debug level; the gauges keep their last value). */
  logger?: Logger;
  /** outbox_relay_stalled turns 1 after events have waited and nothing was delivered for this long. Default 30. */
  stallAfterSeconds?: number;
}

export interface BacklogStats {
  backlog: number;
  oldestUndeliveredAgeSeconds: number;
  oldestUndeliveredAt: Date | null;
  parkedAggregates: number;
  parkedEvents: number;
  /** Events waiting for delivery that are not parked. */
  pendingEvents: number;
  /** Age in seconds of the oldest waiting event that is not parked (0 when none). */
  oldestPendingAgeSeconds: number;
  /** When a relay last marked an event delivered (null: never, or the delivered rows were cleaned up). */
  lastDeliveredAt: Date | null;
  /** Seconds since then (null: never). */
  lastDeliveryAgeSeconds: number | null;
}

/**
 * Whether delivery is stalled: events that are not parked have waited longer than `stallAfterSeconds`
 * and nothing was delivered for as long (or ever).
 */
export function isStalled(s: BacklogStats, stallAfterSeconds: number = DEFAULT_STALL_AFTER_SECONDS): boolean {
  return s.pendingEvents > 0 && s.oldestPendingAgeSeconds > stallAfterSeconds && (s.lastDeliveryAgeSeconds === null || s.lastDeliveryAgeSeconds > stallAfterSeconds);
}

/**
 * Backlog, oldest undelivered age and parked counts from outbox_delivery, in one statement that reads
 * only undelivered rows: each part is answered from a partial index of the delivery queue
 * (outbox_delivery_pending_idx, outbox_delivery_parked_idx; the last delivery from the top of
 * outbox_delivery_delivered_idx), so a scrape costs the size of the backlog, never the delivered rows kept
 * for OUTBOX_DELIVERED_RETENTION.
 */
export async function readBacklog(query: QueryFn, schema: string = DEFAULT_SCHEMA): Promise<BacklogStats> {
  const d = `${ident(schema)}.outbox_delivery`;
  const { rows } = await query(
    `SELECT (SELECT count(*) FROM ${d} WHERE delivered_at IS NULL)::bigint AS backlog,
            p.oldest,
            COALESCE(EXTRACT(EPOCH FROM now() - p.oldest), 0)::float8 AS age,
            (SELECT count(*) FROM (SELECT DISTINCT aggregate_type, aggregate_id FROM ${d} WHERE parked_at IS NOT NULL AND delivered_at IS NULL) a)::bigint AS parked_aggregates,
            (SELECT count(*) FROM ${d} WHERE parked_at IS NOT NULL AND delivered_at IS NULL)::bigint AS parked_events,
            q.pending,
            COALESCE(EXTRACT(EPOCH FROM now() - q.oldest_pending), 0)::float8 AS pending_age,
            l.last_delivered,
            EXTRACT(EPOCH FROM now() - l.last_delivered)::float8 AS last_delivery_age
       FROM (SELECT min(enqueued_at) AS oldest FROM ${d} WHERE delivered_at IS NULL) p,
            (SELECT count(*)::bigint AS pending, min(enqueued_at) AS oldest_pending FROM ${d} WHERE delivered_at IS NULL AND parked_at IS NULL) q,
            (SELECT max(delivered_at) AS last_delivered FROM ${d} WHERE delivered_at IS NOT NULL) l`,
  );
  const r = rows[0] ?? {};
  const oldest = r.oldest;
  return {
    backlog: Number(r.backlog ?? 0),
    oldestUndeliveredAgeSeconds: Math.max(0, Number(r.age ?? 0)),
    oldestUndeliveredAt: oldest instanceof Date ? oldest : oldest == null ? null : new Date(String(oldest)),
    parkedAggregates: Number(r.parked_aggregates ?? 0),
    parkedEvents: Number(r.parked_events ?? 0),
    pendingEvents: Number(r.pending ?? 0),
    oldestPendingAgeSeconds: Math.max(0, Number(r.pending_age ?? 0)),
    lastDeliveredAt: toDate(r.last_delivered),
    lastDeliveryAgeSeconds: r.last_delivery_age == null ? null : Math.max(0, Number(r.last_delivery_age)),
  };
}

function toDate(v: unknown): Date | null {
  return v instanceof Date ? v : v == null ? null : new Date(String(v));
}

export function createMetrics(options: CreateMetricsOptions = {}): OutboxMetrics {
  const registry = new Registry();
  if (options.labels) registry.setDefaultLabels(options.labels);
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  // One database round trip per scrape, shared by the three gauges that read it.
  let pending: { at: number; stats: Promise<BacklogStats | undefined> } | undefined;
  const stats = (): Promise<BacklogStats | undefined> => {
    const query = options.query;
    if (!query) return Promise.resolve(undefined);
    const now = Date.now();
    if (!pending || now - pending.at > 500) {
      pending = {
        at: now,
        stats: readBacklog(query, options.schema ?? DEFAULT_SCHEMA).catch((err: unknown) => {
          options.logger?.debug(`metrics: reading the outbox backlog failed: ${redact(errorMessage(err))}`);
          return undefined;
        }),
      };
    }
    return pending.stats;
  };
  const fromDb = (pick: (s: BacklogStats) => number) =>
    options.query
      ? async function collect(this: Gauge) {
          const s = await stats();
          if (s) this.set(pick(s));
        }
      : undefined;

  const backlogCollect = fromDb((s) => s.backlog);
  const ageCollect = fromDb((s) => s.oldestUndeliveredAgeSeconds);
  const parkedCollect = fromDb((s) => s.parkedAggregates);
  const parkedEventsCollect = fromDb((s) => s.parkedEvents);
  const lastDeliveryCollect = fromDb((s) => s.lastDeliveryAgeSeconds ?? -1);
  const stallAfter = options.stallAfterSeconds ?? DEFAULT_STALL_AFTER_SECONDS;
  const stalledCollect = fromDb((s) => (isStalled(s, stallAfter) ? 1 : 0));

  return {
    registry,
    backlog: new Gauge({
      name: METRIC_NAMES.backlog,
      help: 'Outbox events enqueued and not yet delivered to Kafka',
      registers,
      ...(backlogCollect ? { collect: backlogCollect } : {}),
    }),
    oldestUndeliveredAge: new Gauge({
      name: METRIC_NAMES.oldestUndeliveredAge,
      help: 'Age in seconds of the oldest undelivered outbox event (0 when none)',
      registers,
      ...(ageCollect ? { collect: ageCollect } : {}),
    }),
    publishedTotal: new Counter({
      name: METRIC_NAMES.publishedTotal,
      help: 'Outbox events published to Kafka',
      labelNames: ['topic'] as const,
      registers,
    }),
    publishLatency: new Histogram({
      name: METRIC_NAMES.publishLatency,
      help: 'Seconds from outbox commit to broker acknowledgement',
      labelNames: ['topic'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    parked: new Gauge({
      name: METRIC_NAMES.parked,
      help: 'Aggregates whose outbox delivery is parked (waiting for `outbox parked retry|skip`)',
      registers,
      ...(parkedCollect ? { collect: parkedCollect } : {}),
    }),
    parkedEvents: new Gauge({
      name: METRIC_NAMES.parkedEvents,
      help: 'Outbox events that are parked (waiting for `outbox parked retry|skip`); outbox_parked counts their aggregates',
      registers,
      ...(parkedEventsCollect ? { collect: parkedEventsCollect } : {}),
    }),
    parkedEventsTotal: new Counter({
      name: METRIC_NAMES.parkedEventsTotal,
      help: 'Outbox events the relay parked (not publishable; see `outbox parked list`)',
      registers,
    }),
    relayLeader: new Gauge({
      name: METRIC_NAMES.relayLeader,
      help: '1 while this relay instance publishes: the active one for its outbox schema (0 while it stands by); a sharded relay (OUTBOX_RELAY_SHARDED) while it owns at least one shard',
      registers,
    }),
    relayShardsOwned: new Gauge({
      name: METRIC_NAMES.relayShardsOwned,
      help: 'Shards of the delivery queue this sharded relay instance publishes now (OUTBOX_RELAY_SHARDED; 0 otherwise)',
      registers,
    }),
    relayFailuresTotal: new Counter({
      name: METRIC_NAMES.relayFailuresTotal,
      help: 'Relay loop failures by stage (each retried with backoff)',
      labelNames: ['stage'] as const,
      registers,
    }),
    consumerLag: new Gauge({
      name: METRIC_NAMES.consumerLag,
      help: 'Messages between a projection consumer offset and the partition high watermark',
      labelNames: ['projection', 'topic', 'partition'] as const,
      registers,
    }),
    dlqTotal: new Counter({
      name: METRIC_NAMES.dlqTotal,
      help: 'Events a projection sent to its dead-letter topic',
      labelNames: ['projection'] as const,
      registers,
    }),
    rebuildProgress: new Gauge({
      name: METRIC_NAMES.rebuildProgress,
      help: 'Progress of a projection rebuild (0..1)',
      labelNames: ['projection'] as const,
      registers,
    }),
    lastDeliveryAge: new Gauge({
      name: METRIC_NAMES.lastDeliveryAge,
      help: 'Seconds since an outbox event was last delivered to Kafka by any relay (-1: never)',
      registers,
      ...(lastDeliveryCollect ? { collect: lastDeliveryCollect } : {}),
    }),
    relayStalled: new Gauge({
      name: METRIC_NAMES.relayStalled,
      help: `1 while outbox delivery is stalled: events (not parked) have waited, and nothing was delivered, for more than ${stallAfter} s`,
      registers,
      ...(stalledCollect ? { collect: stalledCollect } : {}),
    }),
  };
}
