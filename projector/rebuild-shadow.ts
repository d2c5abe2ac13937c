import { randomBytes } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import type { OutboxConfig } from '../core/config';
import { OutboxError } from '../core/errors';
import { createKafka } from '../core/kafka';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { createPool } from '../core/pg';
import { loadCatalog, type SchemaCatalog } from '../schemas/catalog';
import { createEventDecoder } from '../schemas/decode-event';
import type { EventDecoderLike } from './decode-message';
import { projectorMetrics } from './metrics';
import { startCatchUp, type RebuildProgress } from './rebuild-catch-up';
import { cleanUp, closeRebuild } from './rebuild-clean-up';
import { prepareShadow, type RebuildRun } from './rebuild-prepare';
import { swapOrCompare, type ComparisonReport } from './rebuild-swap';
import { builtInProjections } from './start-projector';
import type { Projection } from './types';

export type { RebuildProgress } from './rebuild-catch-up';
export { tableChecksum, type ComparisonReport, type TableComparison } from './rebuild-swap';

export interface RebuildResult {
  projection: string;
  generation: number;
  previousGeneration: number;
  swapped: boolean;
  dryRun: boolean;
  events: number;
  seconds: number;
  eventsPerSecond: number;
  comparison?: ComparisonReport;
}

export interface RebuildOptions {
  config: OutboxConfig;
  logger: Logger;
  /** A projection, or the name of a built-in one. */
  projection: string | Projection;
  pool?: pg.Pool;
  kafka?: Kafka;
  decoder?: EventDecoderLike;
  catalog?: SchemaCatalog;
  catalogNamespace?: string;
  /** Default 'beginning'. */
  from?: 'beginning' | { timestamp: Date | number };
  /** Compare shadow and live (row counts, checksums) and drop the shadow instead of swapping. */
  dryRun?: boolean;
  onProgress?(p: RebuildProgress): void;
  progressIntervalMs?: number;
  metrics?: { registry: Registry };
  groupIdPrefix?: string;
  sessionTimeoutMs?: number;
  /** Stop waiting for the shadow to catch up after this long (default: no limit). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Rebuild a projection from Kafka into a new generation (shadow tables in their own schema) while the
 * live generation keeps serving, in four steps:
 * - prepare (rebuild-prepare.ts): the rebuild lock (one rebuild per projection), a new generation, start
 *   offsets and the shadow's checkpoints just before them;
 * - catch up (rebuild-catch-up.ts): a consumer group of its own applies the topics to the shadow;
 * - swap or compare (rebuild-swap.ts): live is paused only for the swap transaction, the shadow must have
 *   applied at least what live has, then the reader views are repointed (readers waiting on the view lock
 *   continue on the new tables, none fails); with `dryRun` the generations are compared instead (row
 *   counts and checksums at identical offsets);
 * - clean up (rebuild-clean-up.ts): the generation that is not live is dropped (the old one, or the dry
 *   run's shadow).
 * See docs/projector.md.
 */
export async function rebuildProjection(options: RebuildOptions): Promise<RebuildResult> {
  const run = openRebuild(options);
  const dryRun = options.dryRun ?? false;
  // Without a callback, progress goes to the log (JSON lines) every progressIntervalMs.
  const onProgress = options.onProgress ?? ((p: RebuildProgress): void => run.logger.info({ ...p }, 'rebuild progress'));
  try {
    const prepared = await prepareShadow({ run, from: options.from ?? 'beginning', dryRun });
    const { sessionTimeoutMs, timeoutMs, signal } = options;
    const catchUp = await startCatchUp({ run, prepared, onProgress, progressIntervalMs: options.progressIntervalMs ?? 1000, sessionTimeoutMs, timeoutMs, signal });
    const comparison = await swapOrCompare({ shadow: prepared.shadow, catchUp, dryRun, onProgress, signal });
    const final = await cleanUp({ run, prepared, catchUp, dryRun, onProgress });
    const seconds = (Date.now() - run.started) / 1000;
    const result: RebuildResult = {
      projection: run.projection.name,
      generation: prepared.shadow.generation,
      previousGeneration: prepared.previousGeneration,
      swapped: !dryRun,
      dryRun,
      events: final.processed,
      seconds,
      eventsPerSecond: Math.round(final.processed / Math.max(seconds, 0.001)),
      ...(comparison ? { comparison } : {}),
    };
    run.logger.info(result, dryRun ? 'rebuild compared (dry run)' : 'rebuild swapped in');
    return result;
  } finally {
    await closeRebuild(run);
  }
}

/** The rebuild's parts: those given in the options, the others opened for this rebuild (and closed by closeRebuild). */
function openRebuild(options: RebuildOptions): RebuildRun {
  const { config } = options;
  const logger = options.logger.child({ component: 'rebuild' });
  const metrics = options.metrics ? projectorMetrics(options.metrics.registry) : undefined;
  const catalog = options.catalog ?? loadCatalog(undefined, options.catalogNamespace ? { namespace: options.catalogNamespace } : {});
  const projection =
    typeof options.projection === 'string'
      ? builtInProjections(config, { catalog, ...(metrics ? { metrics } : {}) }).find((p) => p.name === options.projection)
      : options.projection;
  if (!projection) throw new OutboxError('NOT_FOUND', `no projection named ${String(options.projection)}`, { details: { projection: options.projection } });
  const pool = options.pool ?? createPool(config.databaseUrl, logger, { max: 5, applicationName: 'outbox-rebuild' });
  const kafka = options.kafka ?? createKafka(config.kafka, logger, 'rebuild');
  return {
    config,
    logger,
    ...(metrics ? { metrics } : {}),
    projection,
    pool,
    kafka,
    decoder: options.decoder ?? createEventDecoder({ registry: config.registry, catalog, logger }),
    admin: kafka.admin(),
    groupId: `${options.groupIdPrefix ?? `${config.kafka.clientId}.projector`}.${projection.name}.rebuild.${randomBytes(4).toString('hex')}`,
    started: Date.now(),
    held: { ownPool: options.pool === undefined, untrack: trackRunning('projector-rebuild', `${projection.name}-${process.pid}`) },
  };
}
