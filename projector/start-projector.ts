import { randomBytes } from 'node:crypto';
import { Partitioners, type Admin, type Kafka, type Producer } from 'kafkajs';
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
import { projectorMetrics, type ProjectorMetrics } from './metrics';
import { RETRY_POLICIES } from '../core/retry';
import { waitFor } from '../core/wait';
import { createAuditLogProjection } from './projections/audit-log';
import { environmentDomain } from '../core/config-module';
import { toProjection, type ProjectionSource } from './define';
import type { AggregateReducer, Projection } from './types';

/** Topic of an aggregate type, as the relay routes it: explicit map first, then `<aggregate_type><suffix>`. */
export function topicOf(config: OutboxConfig, aggregateType: string): string {
  return topicFor(aggregateType, config.relay);
}

export interface BuiltInProjectionsOptions {
  /** The catalog whose aggregate types audit_log reads (default: the configured one, see schemas/catalog). */
  catalog?: SchemaCatalog;
  metrics?: ProjectorMetrics;
  /** Read these topics instead (audit_log and every projection; tests point them at a topic of their own). */
  topics?: string[];
  /** Aggregate reducers for audit_log's snapshots (default: the config module's reducers). */
  reducers?: AggregateReducer[];
  /** The team's projections (default: the config module's projections). */
  projections?: ProjectionSource[];
  /** Include audit_log (default: the config module's auditLog, else true). */
  auditLog?: boolean;
}

/**
 * The projections `outbox project` runs: `audit_log` over every aggregate type of the catalog (with
 * snapshots of the reducers' aggregates), then the team's projections. Defaults come from the process's
 * config module (OUTBOX_CONFIG or outbox.config.* in the working directory).
 */
export function builtInProjections(config: OutboxConfig, options: BuiltInProjectionsOptions = {}): Projection[] {
  const needsDomain = options.reducers === undefined || options.projections === undefined || options.auditLog === undefined;
  const domain = needsDomain ? environmentDomain().config : {};
  const routing = { ...config.relay, topicMap: { ...(domain.topics ?? {}), ...config.relay.topicMap } };
  const out: Projection[] = [];
  if (options.auditLog ?? domain.auditLog ?? true) {
    const catalog = options.catalog ?? (options.topics ? undefined : loadCatalog());
    const topics = options.topics ?? [...new Set((catalog?.aggregateTypes() ?? []).map((t) => topicFor(t, routing)))];
    if (topics.length === 0)
      throw new OutboxError('CONFIG_INVALID', `audit_log has no topics: the schemas directory ${catalog?.dir ?? ''} holds no <aggregate_type>/<EventType>.v<N>.avsc`);
    out.push(
      createAuditLogProjection({
        topics,
        reducers: options.reducers ?? ((domain.reducers ?? []) as AggregateReducer[]),
        ...(options.catalog ? { catalog: options.catalog } : catalog ? { catalog } : {}),
        ...(options.metrics ? { chainBreaks: options.metrics.chainBreaksTotal } : {}),
      }),
    );
  }
  for (const source of options.projections ?? (domain.projections as ProjectionSource[] | undefined) ?? []) {
    const p = toProjection(source, routing);
    out.push(options.topics ? { ...p, topics: options.topics } : p);
  }
  return out;
}

export interface PartitionLag {
  projection: string;
  topic: string;
  partition: number;
  /** Last offset handled: applied, or not a record (a transaction marker); -1: none. */
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
  /** Default: builtInProjections(config) (audit_log and the config module's projections). */
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
  /** Called whenever a consumer's fetch loop goes round or it heartbeats (liveness: core/lifecycle.ts createLiveness). */
  heartbeat?(): void;
}

export interface RunningProjector {
  id: string;
  /** Resolves after stop(); rejects if a consumer crashed for good. */
  done: Promise<void>;
  stop(): Promise<void>;
  /** Lag per projection and partition (high watermark minus the consumer's position), as of the last fetched batch. */
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
  let missing: string[] = [];
  await waitFor(
    async () => {
      const existing = new Set(await admin.listTopics());
      const warned = missing.length > 0;
      missing = topics.filter((t) => !existing.has(t));
      if (missing.length > 0 && !warned) logger.warn({ topics: missing }, `waiting for topic(s) ${missing.join(', ')} (created by the relay)`);
      return missing.length === 0;
    },
    {
      timeoutMs,
      every: RETRY_POLICIES.metadata,
      timedOut: () =>
        new OutboxError('NOT_FOUND', `topic(s) ${missing.join(', ')} do not exist (the relay creates them when it starts; waited ${Math.round(timeoutMs / 1000)} s)`, {
          details: { topics: missing },
        }),
    },
  );
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
  /** Per projection, the partitions its consumer holds since its last group join (`topic\u0000partition`). */
  const assigned = new Map<string, Set<string>>();
  let producer: Producer | undefined;

  const cleanup = async (): Promise<void> => {
    await Promise.all(consumers.map((c) => c.stop()));
    await producer?.disconnect().catch(() => undefined);
    if (ownPool) await pool.end().catch(() => undefined);
    untrack();
  };

  try {
    for (const p of projections) await ensureLiveGeneration(pool, config.projector.schema, p, logger);
    const admin = kafka.admin();
    await admin.connect();
    try {
      const sources = [...new Set(projections.flatMap((p) => p.topics))];
      await waitForTopics(admin, sources, options.topicWaitMs ?? 60_000, logger);
      await ensureDeadLetterTopics(admin, sources, { replication: config.kafka, logger });
    } finally {
      await admin.disconnect();
    }
    // The dead-letter producer; the partitioner named (kafkajs' default) so that kafkajs does not warn about it at every start.
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const o = ident(config.projector.schema);
    for (const p of projections) {
      const c = await consumeBatches({
        kafka,
        pool,
        decoder,
        producer,
        target: { projection: p, outboxSchema: config.projector.schema, generation: 'live', snapshotEvery: config.projector.snapshotEvery, logger },
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
        onPosition(topic, partition, { next, highWatermark }) {
          // A batch that ends after its partition moved to another instance reports no lag here.
          if (!assigned.get(p.name)?.has(`${topic}\u0000${partition}`)) return;
          // Lag from the consumer's position (the next offset it fetches), not from the last applied
          // offset + 1: on a transactionally written topic, commit markers occupy offsets.
          const lag = Math.max(0, Number(BigInt(highWatermark) - next));
          lags.set(`${p.name}\u0000${topic}\u0000${partition}`, { projection: p.name, topic, partition, lastOffset: (next - 1n).toString(), highWatermark, lag });
          metrics?.consumerLag.set({ projection: p.name, topic, partition: String(partition) }, lag);
        },
        onAssigned(assignment) {
          // After a rebalance, lag is reported only for the partitions this instance now holds: a partition
          // that moved to another instance drops out of lag() and /metrics instead of keeping its last value.
          const held = new Set(Object.entries(assignment).flatMap(([t, parts]) => parts.map((n) => `${t}\u0000${n}`)));
          assigned.set(p.name, held);
          for (const [key, l] of lags) {
            if (l.projection !== p.name || held.has(`${l.topic}\u0000${l.partition}`)) continue;
            lags.delete(key);
            metrics?.consumerLag.remove({ projection: p.name, topic: l.topic, partition: String(l.partition) });
          }
        },
        logger: logger.child({ projection: p.name }),
        ...(metrics ? { metrics } : {}),
      });
      for (const e of [c.consumer.events.FETCH_START, c.consumer.events.HEARTBEAT]) c.consumer.on(e, () => options.heartbeat?.());
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
