import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Logger } from './logger';
import { ident } from './pg';
import { redact } from './redact';
import { errorMessage } from './errors';

/**
 * Prometheus metrics of kafka-outbox. `createMetrics` builds a fresh prom-client Registry (never the
 * global one, so tests and several components in one process do not collide) with the default Node.js
 * metrics and every outbox metric. Components set the ones they own:
 *
 * - relay: `publishedTotal`, `publishLatency`, `parkedEventsTotal` (and, without a `query`, `backlog`, `oldestUndeliveredAge`, `parked`)
 * - projector: `consumerLag`, `dlqTotal`, `rebuildProgress`
 *
 * When `query` is given, the three outbox gauges are computed from PostgreSQL at scrape time (one query
 * per scrape, shared by the three), so they are right even when no relay is running in this process.
 */
export const METRIC_NAMES = {
  backlog: 'outbox_backlog',
  oldestUndeliveredAge: 'outbox_oldest_undelivered_age_seconds',
  publishedTotal: 'outbox_published_total',
  publishLatency: 'outbox_publish_latency_seconds',
  parked: 'outbox_parked',
  parkedEventsTotal: 'outbox_parked_events_total',
  consumerLag: 'projector_consumer_lag',
  dlqTotal: 'projector_dlq_total',
  rebuildProgress: 'projector_rebuild_progress_ratio',
} as const;

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
  /** Events this relay parked (poison: not encodable); each parking is also logged with event id and reason. */
  parkedEventsTotal: Counter;
  /** Messages between a projection's committed offset and the high watermark, by projection/topic/partition. */
  consumerLag: Gauge<'projection' | 'topic' | 'partition'>;
  /** Events a projection sent to its dead-letter topic, by projection. */
  dlqTotal: Counter<'projection'>;
  /** Progress of a running rebuild from 0 to 1, by projection. */
  rebuildProgress: Gauge<'projection'>;
}

export interface CreateMetricsOptions {
  /** Default Node.js process metrics (CPU, memory, event loop lag, GC). Default true. */
  defaultMetrics?: boolean;
  /** Labels added to every metric, e.g. `{ component: 'relay', instance: config.relay.instanceId }`. */
  labels?: Record<string, string>;
  /** Compute outbox_backlog, outbox_oldest_undelivered_age_seconds and outbox_parked from PostgreSQL on scrape. */
  query?: QueryFn;
  /** PostgreSQL schema of the outbox tables (with `query`). Default 'public'. */
  schema?: string;
  /** Where a failing scrape-time query is reported (debug level; the gauges keep their last value). */
  logger?: Logger;
}

export interface BacklogStats {
  backlog: number;
  oldestUndeliveredAgeSeconds: number;
  oldestUndeliveredAt: Date | null;
  parkedAggregates: number;
  parkedEvents: number;
}

/** Backlog, oldest undelivered age and parked counts from outbox_delivery (one statement). */
export async function readBacklog(query: QueryFn, schema = 'public'): Promise<BacklogStats> {
  const { rows } = await query(
    `SELECT count(*) FILTER (WHERE delivered_at IS NULL)::bigint AS backlog,
            min(enqueued_at) FILTER (WHERE delivered_at IS NULL) AS oldest,
            COALESCE(EXTRACT(EPOCH FROM now() - min(enqueued_at) FILTER (WHERE delivered_at IS NULL)), 0)::float8 AS age,
            count(DISTINCT (aggregate_type, aggregate_id)) FILTER (WHERE parked_at IS NOT NULL AND delivered_at IS NULL)::bigint AS parked_aggregates,
            count(*) FILTER (WHERE parked_at IS NOT NULL AND delivered_at IS NULL)::bigint AS parked_events
       FROM ${ident(schema)}.outbox_delivery`,
  );
  const r = rows[0] ?? {};
  const oldest = r.oldest;
  return {
    backlog: Number(r.backlog ?? 0),
    oldestUndeliveredAgeSeconds: Math.max(0, Number(r.age ?? 0)),
    oldestUndeliveredAt: oldest instanceof Date ? oldest : oldest == null ? null : new Date(String(oldest)),
    parkedAggregates: Number(r.parked_aggregates ?? 0),
    parkedEvents: Number(r.parked_events ?? 0),
  };
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
        stats: readBacklog(query, options.schema ?? 'public').catch((err: unknown) => {
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
    parkedEventsTotal: new Counter({
      name: METRIC_NAMES.parkedEventsTotal,
      help: 'Outbox events the relay parked (not publishable; see `outbox parked list`)',
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
  };
}
