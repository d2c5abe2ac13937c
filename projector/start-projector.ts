import { randomBytes } from 'node:crypto';
import type { Admin, Kafka, Producer } from 'kafkajs';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import type { OutboxConfig } from '../core/config';
import { errorMessage, OutboxError } from '../core/errors';
import { createKafka } from '../core/kafka';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { createPool, ident } from '../core/pg';
import { topicFor } from '../core/topics';
import { loadCatalog, type SchemaCatalog } from '../schemas/catalog';
import { createEventDecoder } from '../schemas/decode-event';
import { consumeBatches, type RunningConsumer } from './consume-batch';
import { ensureDeadLetterTopics } from './dead-letter';
import type { EventDecoderLike } from './decode-message';
import { ensureLiveGeneration } from './ensure-generation';
import { builtInReducers } from './load-aggregate';
import { projectorMetrics, type ProjectorMetrics } from './metrics';
import { backoffMs, sleep } from './retry-transient';
import { createAuditLogProjection } from './projections/audit-log';
import { createUsersProjection } from './projections/users';
import type { Projection } from './types';

/** Topic of an aggregate type, as the relay routes it: explicit map first, then `<aggregate_type><suffix>`. */
export function topicOf(config: OutboxConfig, aggregateType: string): string {
  return topicFor(aggregateType, config.relay);
}

/** The built-in projections (`audit_log` with snapshots of the built-in reducers, `users`) over the demo topics. */
export function builtInProjections(config: OutboxConfig, options: { catalog?: SchemaCatalog; metrics?: ProjectorMetrics; topics?: string[] } = {}): Projection[] {
  const topics = options.topics ?? [topicOf(config, 'user')];
  return [
    createAuditLogProjection({
      topics,
      reducers: builtInReducers,
      ...(options.catalog ? { catalog: options.catalog } : {}),
      ...(options.metrics ? { chainBreaks: options.metrics.chainBreaksTotal } : {}),
    }),
    createUsersProjection({ topics }),
  ];
}

export interface PartitionLag {
  projection: string;
  topic: string;
  partition: number;
  /** Last applied offset (-1: none). */
  lastOffset: string;
  highWatermark: string;
  lag: number;
}

export interface StartProjectorOptions {
  config: OutboxConfig;
  logger: Logger;
  /** A pool to use (not ended on stop); default: a new pool on `databaseUrl` or config.databaseUrl. */
  pool?: pg.Pool;
  databaseUrl?: string;
  /** Default: builtInProjections(config). */
  projections?: Projection[] | ((deps: { catalog: SchemaCatalog; metrics?: ProjectorMetrics }) => Projection[]);
  /** Default: loadCatalog() (namespace `catalogNamespace` if given). */
  catalog?: SchemaCatalog;
  catalogNamespace?: string;
  /** Default: schemas/decode-event createEventDecoder over the catalog and config.registry. */
  decoder?: EventDecoderLike;
  kafka?: Kafka;
  /** Anything with a prom-client registry (core/metrics OutboxMetrics fits): projector metrics are registered there. */
  metrics?: { registry: Registry };
  /** Consumer group of projection P: `<groupIdPrefix>.<P>` (default `<clientId>.projector`). */
  groupIdPrefix?: string;
  sessionTimeoutMs?: number;
  /** How long to wait for the source topics to exist before failing (default 60 s). */
  topicWaitMs?: number;
  partitionsConsumedConcurrently?: number;
}

export interface RunningProjector {
  id: string;
  /** Resolves after stop(); rejects if a consumer crashed for good. */
  done: Promise<void>;
  stop(): Promise<void>;
  /** Lag per projection and partition, as of the last applied batch. */
  lag(): PartitionLag[];
  projections: Projection[];
}

/**
 * Run projections, one consumer group each, until stop(). Each projection gets its live generation
 * (created on first start), dead-letter topics `<topic>.dlq`, and a consumer applying batches in
 * transactions with their checkpoints.
 */
/**
 * The relay creates the event topics; a projector started first (or at the same time) waits for them
 * instead of failing, and fails with the missing topics named only after `timeoutMs`.
 */
async function waitForTopics(admin: Admin, topics: string[], timeoutMs: number, logger: Logger): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let warned = false;
  for (let attempt = 0; ; attempt++) {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length === 0) return;
    if (Date.now() >= deadline) {
      throw new OutboxError('NOT_FOUND', `topic(s) ${missing.join(', ')} do not exist (the relay creates them when it starts; waited ${Math.round(timeoutMs / 1000)} s)`, {
        details: { topics: missing },
      });
    }
    if (!warned) {
      logger.warn({ topics: missing }, `waiting for topic(s) ${missing.join(', ')} (created by the relay)`);
      warned = true;
    }
    await sleep(Math.min(backoffMs(attempt, 2000), Math.max(0, deadline - Date.now())));
  }
}

export async function startProjector(options: StartProjectorOptions): Promise<RunningProjector> {
  const { config } = options;
  const id = `projector-${process.pid}-${randomBytes(3).toString('hex')}`;
  const logger = options.logger.child({ component: 'projector', projectorId: id });
  const metrics = options.metrics ? projectorMetrics(options.metrics.registry) : undefined;
  const catalog = options.catalog ?? loadCatalog(undefined, options.catalogNamespace ? { namespace: options.catalogNamespace } : {});
  const projections =
    typeof options.projections === 'function'
      ? options.projections({ catalog, ...(metrics ? { metrics } : {}) })
      : (options.projections ?? builtInProjections(config, { catalog, ...(metrics ? { metrics } : {}) }));
  const concurrency = options.partitionsConsumedConcurrently ?? 2;
  const ownPool = options.pool === undefined;
  const pool = options.pool ?? createPool(options.databaseUrl ?? config.databaseUrl, logger, { max: projections.length * concurrency + 2, applicationName: 'outbox-projector' });
  const kafka = options.kafka ?? createKafka(config.kafka, logger, 'projector');
  const decoder = options.decoder ?? createEventDecoder({ registry: config.registry, catalog, logger });
  const untrack = trackRunning('projector', id);
  const consumers: RunningConsumer[] = [];
  const lags = new Map<string, PartitionLag>();
  let producer: Producer | undefined;

  const cleanup = async (): Promise<void> => {
    await Promise.all(consumers.map((c) => c.stop()));
    await producer?.disconnect().catch(() => undefined);
    if (ownPool) await pool.end().catch(() => undefined);
    untrack();
  };

  try {
    for (const p of projections) await ensureLiveGeneration(pool, config.schema, p, logger);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const sources = [...new Set(projections.flatMap((p) => p.topics))];
      await waitForTopics(admin, sources, options.topicWaitMs ?? 60_000, logger);
      await ensureDeadLetterTopics(admin, sources);
    } finally {
      await admin.disconnect();
    }
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const o = ident(config.schema);
    for (const p of projections) {
      const c = await consumeBatches({
        kafka,
        pool,
        decoder,
        producer,
        target: { projection: p, outboxSchema: config.schema, generation: 'live', snapshotEvery: config.projector.snapshotEvery, logger },
        groupId: `${options.groupIdPrefix ?? `${config.kafka.clientId}.projector`}.${p.name}`,
        topics: p.topics,
        batchSize: config.projector.batchSize,
        ...(options.sessionTimeoutMs !== undefined ? { sessionTimeoutMs: options.sessionTimeoutMs } : {}),
        partitionsConsumedConcurrently: concurrency,
        async startOffset(topic, partition) {
          const { rows } = await pool.query<{ last_offset: string }>(
            `SELECT f.last_offset FROM ${o}.projector_offsets f JOIN ${o}.projector_projections pp ON pp.projection = f.projection AND pp.live_generation = f.generation
              WHERE f.projection = $1 AND f.topic = $2 AND f.partition = $3`,
            [p.name, topic, partition],
          );
          return rows[0] && BigInt(rows[0].last_offset) >= 0n ? (BigInt(rows[0].last_offset) + 1n).toString() : null;
        },
        onApplied(topic, partition, result, highWatermark) {
          if (result.lastOffset === null) return;
          const lag = Math.max(0, Number(BigInt(highWatermark) - result.lastOffset - 1n));
          lags.set(`${p.name}\u0000${topic}\u0000${partition}`, { projection: p.name, topic, partition, lastOffset: result.lastOffset.toString(), highWatermark, lag });
          metrics?.consumerLag.set({ projection: p.name, topic, partition: String(partition) }, lag);
        },
        logger: logger.child({ projection: p.name }),
        ...(metrics ? { metrics } : {}),
      });
      consumers.push(c);
    }
  } catch (err) {
    logger.error({ err: errorMessage(err) }, 'projector failed to start');
    await cleanup();
    throw err;
  }
  logger.info({ projections: projections.map((p) => p.name) }, 'projector started');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= cleanup().then(() => logger.info('projector stopped'));
    return stopping;
  };
  const done = Promise.all(consumers.map((c) => c.done)).then(() => undefined);
  // A consumer that crashed for good stops the whole projector (the host decides what to do).
  done.catch(() => void stop());
  return {
    id,
    done: done.then(() => stopping ?? Promise.resolve()),
    stop,
    lag: () => [...lags.values()].sort((a, b) => (a.projection + a.topic).localeCompare(b.projection + b.topic) || a.partition - b.partition),
    projections,
  };
}
