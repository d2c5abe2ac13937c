import { randomBytes } from 'node:crypto';
import type { Kafka, Producer } from 'kafkajs';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import type { OutboxConfig } from '../core/config';
import { errorMessage, OutboxError } from '../core/errors';
import { createKafka } from '../core/kafka';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { createPool, ident } from '../core/pg';
import { loadCatalog, type SchemaCatalog } from '../schemas/catalog';
import { createEventDecoder } from '../schemas/decode-event';
import { shadowLockKey } from './apply-and-checkpoint';
import { consumeBatches, type RunningConsumer } from './consume-batch';
import { ensureDeadLetterTopics } from './dead-letter';
import type { EventDecoderLike } from './decode-message';
import { createGenerationTables, ensureLiveGeneration, generationSchema, liveLockKey, pointViews } from './ensure-generation';
import { projectorMetrics } from './metrics';
import { sleep } from './retry-transient';
import { builtInProjections } from './start-projector';
import type { Projection } from './types';

export interface RebuildProgress {
  projection: string;
  generation: number;
  phase: 'catching_up' | 'swapping' | 'comparing' | 'done';
  /** Messages consumed into the shadow so far. */
  processed: number;
  /** Messages to consume (grows while events keep flowing). */
  total: number;
  eventsPerSecond: number;
  /** Seconds until caught up at the current rate (null: unknown). */
  etaSeconds: number | null;
  ratio: number;
}

export interface TableComparison {
  table: string;
  liveRows: number;
  shadowRows: number;
  liveChecksum: string;
  shadowChecksum: string;
  equal: boolean;
}

export interface ComparisonReport {
  equal: boolean;
  /** Whether both generations had applied exactly the same offsets when compared. */
  offsetsAligned: boolean;
  tables: TableComparison[];
}

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

type Offsets = Map<string, bigint>;

async function offsetsOf(db: Pick<pg.ClientBase, 'query'>, o: string, projection: string, generation: number): Promise<Offsets> {
  const { rows } = await db.query<{ topic: string; partition: number; last_offset: string }>(
    `SELECT topic, partition, last_offset FROM ${o}.projector_offsets WHERE projection = $1 AND generation = $2`,
    [projection, generation],
  );
  return new Map(rows.map((r) => [`${r.topic}/${r.partition}`, BigInt(r.last_offset)]));
}

/** Every partition of `topics`: shadow >= live (or == with `exact`). Topics live read but the shadow does not are not compared. */
function covers(shadow: Offsets, live: Offsets, exact: boolean, topics: string[]): boolean {
  const keys = new Set([...shadow.keys(), ...live.keys()]);
  for (const k of keys) {
    if (!topics.includes(k.slice(0, k.lastIndexOf('/')))) continue;
    const s = shadow.get(k) ?? -1n;
    const l = live.get(k) ?? -1n;
    if (exact ? s !== l : s < l) return false;
  }
  return true;
}

/** Row count and an order-independent checksum of a table (md5 over the sorted rows' md5). */
export async function tableChecksum(db: Pick<pg.ClientBase, 'query'>, qualifiedTable: string, columns?: string[]): Promise<{ rows: number; checksum: string }> {
  const row = columns ? `ROW(${columns.map(ident).join(', ')})::text` : 't::text';
  const { rows } = await db.query<{ n: string; sum: string | null }>(
    `SELECT count(*)::bigint AS n, md5(string_agg(h, '' ORDER BY h)) AS sum FROM (SELECT md5(${row}) AS h FROM ${qualifiedTable} t) x`,
  );
  return { rows: Number(rows[0]?.n ?? 0), checksum: rows[0]?.sum ?? md5Empty };
}
const md5Empty = 'd41d8cd98f00b204e9800998ecf8427e';

/**
 * Rebuild a projection from Kafka into a new generation (shadow tables in their own schema) while the
 * live generation keeps serving. Once the shadow has caught up with the topics, the live projector is
 * paused for a moment (the projection's advisory lock), the shadow is checked to have applied at least
 * what live has, and the reader views are repointed in one transaction: readers waiting on the view
 * lock continue on the new tables, none fails. With `dryRun` the generations are compared instead
 * (row counts and checksums at identical offsets) and the shadow is dropped.
 */
export async function rebuildProjection(options: RebuildOptions): Promise<RebuildResult> {
  const { config } = options;
  const o = ident(config.schema);
  const logger = options.logger.child({ component: 'rebuild' });
  const metrics = options.metrics ? projectorMetrics(options.metrics.registry) : undefined;
  const catalog = options.catalog ?? loadCatalog(undefined, options.catalogNamespace ? { namespace: options.catalogNamespace } : {});
  const projection =
    typeof options.projection === 'string'
      ? builtInProjections(config, { catalog, ...(metrics ? { metrics } : {}) }).find((p) => p.name === options.projection)
      : options.projection;
  if (!projection) throw new OutboxError('NOT_FOUND', `no projection named ${String(options.projection)}`, { details: { projection: options.projection } });
  const name = projection.name;
  const ownPool = options.pool === undefined;
  const pool = options.pool ?? createPool(config.databaseUrl, logger, { max: 5, applicationName: 'outbox-rebuild' });
  const kafka = options.kafka ?? createKafka(config.kafka, logger, 'rebuild');
  const decoder = options.decoder ?? createEventDecoder({ registry: config.registry, catalog, logger });
  const untrack = trackRunning('projector-rebuild', `${name}-${process.pid}`);
  let consumer: RunningConsumer | undefined;
  let producer: Producer | undefined;
  const admin = kafka.admin();
  const groupId = `${options.groupIdPrefix ?? `${config.kafka.clientId}.projector`}.${name}.rebuild.${randomBytes(4).toString('hex')}`;
  const started = Date.now();
  // Without a callback, progress goes to the log (JSON lines) every progressIntervalMs.
  const onProgress = options.onProgress ?? ((p: RebuildProgress): void => logger.info({ ...p }, 'rebuild progress'));
  try {
    const previousGeneration = await ensureLiveGeneration(pool, config.schema, projection, logger);
    // New generation (stale shadows of crashed rebuilds are dropped).
    const generation = await withTx(pool, async (c) => {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${liveLockKey(config.schema, name)}:setup`]);
      const stale = await c.query<{ generation: number; pg_schema: string }>(`SELECT generation, pg_schema FROM ${o}.projector_generations WHERE projection = $1 AND status = 'building'`, [name]);
      for (const s of stale.rows) {
        await c.query(`DROP SCHEMA IF EXISTS ${ident(s.pg_schema)} CASCADE`);
        await c.query(`UPDATE ${o}.projector_generations SET status = 'retired' WHERE projection = $1 AND generation = $2`, [name, s.generation]);
      }
      const { rows } = await c.query<{ g: number }>(`SELECT COALESCE(max(generation), 0) + 1 AS g FROM ${o}.projector_generations WHERE projection = $1`, [name]);
      const g = rows[0]!.g;
      await createGenerationTables(c, config.schema, projection, g, 'building');
      return g;
    });
    logger.info({ projection: name, generation, from: options.from ?? 'beginning', dryRun: options.dryRun ?? false }, 'rebuild started');

    // Start offsets and the first targets.
    await admin.connect();
    await ensureDeadLetterTopics(admin, projection.topics);
    const start = new Map<string, bigint>();
    const high = new Map<string, bigint>();
    const refreshHigh = async (): Promise<void> => {
      for (const topic of projection.topics) for (const p of await admin.fetchTopicOffsets(topic)) high.set(`${topic}/${p.partition}`, BigInt(p.high));
    };
    for (const topic of projection.topics) {
      const offsets = await admin.fetchTopicOffsets(topic);
      const byTs = options.from && options.from !== 'beginning' ? await admin.fetchTopicOffsetsByTimestamp(topic, new Date(options.from.timestamp).getTime()) : undefined;
      for (const p of offsets) {
        const ts = byTs?.find((x) => x.partition === p.partition)?.offset;
        start.set(`${topic}/${p.partition}`, ts !== undefined && BigInt(ts) >= 0n ? BigInt(ts) : BigInt(p.low));
        high.set(`${topic}/${p.partition}`, BigInt(p.high));
      }
    }
    const position = new Map(start);

    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    consumer = await consumeBatches({
      kafka,
      pool,
      decoder,
      producer,
      target: { projection, outboxSchema: config.schema, generation, snapshotEvery: config.projector.snapshotEvery, logger },
      groupId,
      topics: projection.topics,
      batchSize: Math.max(config.projector.batchSize, 2000),
      ...(options.sessionTimeoutMs !== undefined ? { sessionTimeoutMs: options.sessionTimeoutMs } : {}),
      partitionsConsumedConcurrently: 2,
      async startOffset(topic, partition) {
        const { rows } = await pool.query<{ last_offset: string }>(
          `SELECT last_offset FROM ${o}.projector_offsets WHERE projection = $1 AND generation = $2 AND topic = $3 AND partition = $4`,
          [name, generation, topic, partition],
        );
        const stored = rows[0] ? BigInt(rows[0].last_offset) : -1n;
        if (stored >= 0n) return (stored + 1n).toString();
        return (start.get(`${topic}/${partition}`) ?? 0n).toString();
      },
      onApplied(topic, partition, result) {
        if (result.lastOffset !== null) position.set(`${topic}/${partition}`, result.lastOffset + 1n);
      },
      logger: logger.child({ projection: name, generation }),
      ...(metrics ? { metrics } : {}),
    });

    const progress = (phase: RebuildProgress['phase']): RebuildProgress => {
      let processed = 0n;
      let remaining = 0n;
      for (const [k, s] of start) {
        const pos = position.get(k) ?? s;
        processed += pos - s;
        const h = high.get(k) ?? pos;
        if (h > pos) remaining += h - pos;
      }
      const seconds = (Date.now() - started) / 1000;
      const rate = seconds > 0 ? Number(processed) / seconds : 0;
      const total = Number(processed + remaining);
      const p: RebuildProgress = {
        projection: name,
        generation,
        phase,
        processed: Number(processed),
        total,
        eventsPerSecond: Math.round(rate),
        etaSeconds: remaining === 0n ? 0 : rate > 0 ? Number(remaining) / rate : null,
        ratio: total === 0 ? 1 : Number(processed) / total,
      };
      metrics?.rebuildProgress.set({ projection: name }, p.ratio);
      metrics?.rebuildEventsPerSecond.set({ projection: name }, p.eventsPerSecond);
      return p;
    };

    let lastReport = 0;
    let comparison: ComparisonReport | undefined;
    let finished = false;
    while (!finished) {
      if (options.signal?.aborted) throw new OutboxError('SHUTDOWN', `rebuild of ${name} aborted`);
      if (options.timeoutMs !== undefined && Date.now() - started > options.timeoutMs) throw new OutboxError('INTERNAL', `rebuild of ${name} did not catch up within ${options.timeoutMs} ms`);
      await sleep(100, options.signal);
      await refreshHigh();
      const caughtUp = [...high].every(([k, h]) => (position.get(k) ?? start.get(k) ?? 0n) >= h);
      if ((caughtUp || Date.now() - lastReport >= (options.progressIntervalMs ?? 1000))) {
        lastReport = Date.now();
        onProgress(progress('catching_up'));
      }
      if (!caughtUp) continue;
      if (options.dryRun) {
        onProgress(progress('comparing'));
        comparison = await compareGenerations(pool, config.schema, projection, generation, logger);
        finished = comparison !== undefined;
      } else {
        onProgress(progress('swapping'));
        finished = await swapIn(pool, config.schema, projection, generation, logger);
      }
    }
    await consumer.stop();
    consumer = undefined;

    if (options.dryRun) {
      await dropGeneration(pool, config.schema, name, generation);
    } else {
      // The swapped-out generation: nobody writes it any more; readers of it finish first (DROP waits for their locks).
      await dropGeneration(pool, config.schema, name, previousGeneration).catch((err: unknown) =>
        logger.warn({ projection: name, generation: previousGeneration, err: errorMessage(err) }, 'dropping the old generation failed (left in place)'),
      );
    }
    await admin.deleteGroups([groupId]).catch(() => undefined);
    const final = progress('done');
    onProgress(final);
    const seconds = (Date.now() - started) / 1000;
    const result: RebuildResult = {
      projection: name,
      generation,
      previousGeneration,
      swapped: !options.dryRun,
      dryRun: options.dryRun ?? false,
      events: final.processed,
      seconds,
      eventsPerSecond: Math.round(final.processed / Math.max(seconds, 0.001)),
      ...(comparison ? { comparison } : {}),
    };
    logger.info(result, options.dryRun ? 'rebuild compared (dry run)' : 'rebuild swapped in');
    return result;
  } finally {
    await consumer?.stop();
    await producer?.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    if (ownPool) await pool.end().catch(() => undefined);
    untrack();
  }
}

async function withTx<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const r = await fn(c);
    await c.query('COMMIT');
    return r;
  } catch (err) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    c.release();
  }
}

/**
 * Pause live (exclusive projection lock: waits for the live transaction in flight), wait until the
 * shadow has applied at least every offset live has, then repoint the views and the live generation in
 * one transaction. Returns false (retry later) if the shadow does not get there within 5 s.
 */
async function swapIn(pool: pg.Pool, outboxSchema: string, projection: Projection, generation: number, logger: Logger): Promise<boolean> {
  const o = ident(outboxSchema);
  const c = await pool.connect();
  const key = liveLockKey(outboxSchema, projection.name);
  try {
    await c.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
    try {
      const { rows } = await c.query<{ live_generation: number }>(`SELECT live_generation FROM ${o}.projector_projections WHERE projection = $1`, [projection.name]);
      const liveGen = rows[0]!.live_generation;
      const live = await offsetsOf(c, o, projection.name, liveGen);
      const deadline = Date.now() + 5000;
      while (!covers(await offsetsOf(c, o, projection.name, generation), live, false, projection.topics)) {
        if (Date.now() > deadline) return false;
        await sleep(20);
      }
      await c.query('BEGIN');
      try {
        await pointViews(c, outboxSchema, projection, generationSchema(outboxSchema, projection.name, generation));
        await c.query(`UPDATE ${o}.projector_projections SET live_generation = $2, updated_at = now() WHERE projection = $1`, [projection.name, generation]);
        await c.query(`UPDATE ${o}.projector_generations SET status = 'retired' WHERE projection = $1 AND generation = $2`, [projection.name, liveGen]);
        await c.query(`UPDATE ${o}.projector_generations SET status = 'live', swapped_at = now() WHERE projection = $1 AND generation = $2`, [projection.name, generation]);
        await c.query('COMMIT');
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      logger.info({ projection: projection.name, generation, previous: liveGen }, 'shadow generation swapped in');
      return true;
    } finally {
      await c.query('SELECT pg_advisory_unlock(hashtext($1))', [key]);
    }
  } finally {
    c.release();
  }
}

/**
 * Freeze both generations (both advisory locks) at identical offsets and compare every table. Returns
 * undefined when the offsets are not identical at that moment (the caller tries again).
 */
async function compareGenerations(pool: pg.Pool, outboxSchema: string, projection: Projection, generation: number, logger: Logger): Promise<ComparisonReport | undefined> {
  const o = ident(outboxSchema);
  const c = await pool.connect();
  const liveKey = liveLockKey(outboxSchema, projection.name);
  const shadowKey = shadowLockKey(outboxSchema, projection.name, generation);
  try {
    await c.query('SELECT pg_advisory_lock(hashtext($1))', [liveKey]);
    await c.query('SELECT pg_advisory_lock(hashtext($1))', [shadowKey]);
    try {
      const { rows } = await c.query<{ live_generation: number }>(`SELECT live_generation FROM ${o}.projector_projections WHERE projection = $1`, [projection.name]);
      const liveGen = rows[0]!.live_generation;
      const live = await offsetsOf(c, o, projection.name, liveGen);
      const shadow = await offsetsOf(c, o, projection.name, generation);
      if (!covers(shadow, live, true, projection.topics)) {
        logger.debug({ projection: projection.name }, 'dry run: generations at different offsets; retrying');
        return undefined;
      }
      const tables: TableComparison[] = [];
      for (const t of projection.tables) {
        const cols = projection.compareColumns?.[t];
        const a = await tableChecksum(c, `${ident(generationSchema(outboxSchema, projection.name, liveGen))}.${ident(t)}`, cols);
        const b = await tableChecksum(c, `${ident(generationSchema(outboxSchema, projection.name, generation))}.${ident(t)}`, cols);
        tables.push({ table: t, liveRows: a.rows, shadowRows: b.rows, liveChecksum: a.checksum, shadowChecksum: b.checksum, equal: a.rows === b.rows && a.checksum === b.checksum });
      }
      return { equal: tables.every((t) => t.equal), offsetsAligned: true, tables };
    } finally {
      await c.query('SELECT pg_advisory_unlock(hashtext($1))', [shadowKey]);
      await c.query('SELECT pg_advisory_unlock(hashtext($1))', [liveKey]);
    }
  } finally {
    c.release();
  }
}

async function dropGeneration(pool: pg.Pool, outboxSchema: string, projection: string, generation: number): Promise<void> {
  const o = ident(outboxSchema);
  await withTx(pool, async (c) => {
    await c.query(`DROP SCHEMA IF EXISTS ${ident(generationSchema(outboxSchema, projection, generation))} CASCADE`);
    await c.query(`DELETE FROM ${o}.projector_offsets WHERE projection = $1 AND generation = $2`, [projection, generation]);
    await c.query(`DELETE FROM ${o}.projector_seen_events WHERE projection = $1 AND generation = $2`, [projection, generation]);
    await c.query(`UPDATE ${o}.projector_generations SET status = 'retired' WHERE projection = $1 AND generation = $2`, [projection, generation]);
  });
}
