import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { METRIC_NAMES } from '../core/metrics';

/** The projector's Prometheus metrics (the first three share core/metrics.ts names and are reused if registered there). */
export interface ProjectorMetrics {
  consumerLag: Gauge<'projection' | 'topic' | 'partition'>;
  dlqTotal: Counter<'projection'>;
  rebuildProgress: Gauge<'projection'>;
  appliedTotal: Counter<'projection'>;
  chainBreaksTotal: Counter<'projection'>;
  rebuildEventsPerSecond: Gauge<'projection'>;
  /** Events a rebuild has applied: rate() of it is the rebuild rate. */
  rebuildEventsTotal: Counter<'projection'>;
  batchSeconds: Histogram<'projection'>;
}

const cache = new WeakMap<Registry, ProjectorMetrics>();

/** Register (once per registry) and return the projector's metrics in `registry`, e.g. the admin server's. */
export function projectorMetrics(registry: Registry): ProjectorMetrics {
  const cached = cache.get(registry);
  if (cached) return cached;
  const registers = [registry];
  const existing = <T>(name: string): T | undefined => registry.getSingleMetric(name) as T | undefined;
  const m: ProjectorMetrics = {
    consumerLag:
      existing<Gauge<'projection' | 'topic' | 'partition'>>(METRIC_NAMES.consumerLag) ??
      new Gauge({
        name: METRIC_NAMES.consumerLag,
        help: 'Messages between a projection consumer offset and the partition high watermark',
        labelNames: ['projection', 'topic', 'partition'] as const,
        registers,
      }),
    dlqTotal:
      existing<Counter<'projection'>>(METRIC_NAMES.dlqTotal) ??
      new Counter({ name: METRIC_NAMES.dlqTotal, help: 'Events a projection sent to its dead-letter topic', labelNames: ['projection'] as const, registers }),
    rebuildProgress:
      existing<Gauge<'projection'>>(METRIC_NAMES.rebuildProgress) ??
      new Gauge({ name: METRIC_NAMES.rebuildProgress, help: 'Progress of a projection rebuild (0..1)', labelNames: ['projection'] as const, registers }),
    appliedTotal:
      existing<Counter<'projection'>>('outbox_projector_applied_events_total') ??
      new Counter({ name: 'outbox_projector_applied_events_total', help: 'Events applied by a projection', labelNames: ['projection'] as const, registers }),
    chainBreaksTotal:
      existing<Counter<'projection'>>('outbox_projector_chain_breaks_total') ??
      new Counter({ name: 'outbox_projector_chain_breaks_total', help: 'Hash-chain links found broken on arrival (alert)', labelNames: ['projection'] as const, registers }),
    rebuildEventsPerSecond:
      existing<Gauge<'projection'>>('outbox_projector_rebuild_events_per_second') ??
      new Gauge({ name: 'outbox_projector_rebuild_events_per_second', help: 'Throughput of a running rebuild', labelNames: ['projection'] as const, registers }),
    rebuildEventsTotal:
      existing<Counter<'projection'>>('outbox_projector_rebuild_events_total') ??
      new Counter({
        name: 'outbox_projector_rebuild_events_total',
        help: 'Events applied by rebuilds (rate() gives the rebuild rate)',
        labelNames: ['projection'] as const,
        registers,
      }),
    batchSeconds:
      existing<Histogram<'projection'>>('outbox_projector_batch_seconds') ??
      new Histogram({
        name: 'outbox_projector_batch_seconds',
        help: 'Seconds to apply one batch (one transaction)',
        labelNames: ['projection'] as const,
        buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers,
      }),
  };
  cache.set(registry, m);
  return m;
}
