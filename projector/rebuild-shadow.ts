import { randomBytes } from 'node:crypto';
import type { Admin, Kafka, Producer } from 'kafkajs';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import type { OutboxConfig } from '../core/config';
import { errorMessage, OutboxError } from '../core/errors';
import { createKafka } from '../core/kafka';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { createPool, ident, withTransaction } from '../core/pg';
import { loadCatalog, type SchemaCatalog } from '../schemas/catalog';
import { createEventDecoder } from '../schemas/decode-event';
import { shadowLockKey } from './apply-and-checkpoint';
import { consumeBatches, type RunningConsumer } from './consume-batch';
import { ensureDeadLetterTopics } from './dead-letter';
import type { EventDecoderLike } from './decode-message';
import { createGenerationTables, ensureLiveGeneration, generationSchema, liveLockKey, pointViews } from './ensure-generation';
import { projectorMetrics } from './metrics';
import { sleep } from '../core/retry';
import { builtInProjections } from './start-projector';
import type { Projection } from './types';

export interface RebuildProgress {
  projection: string;
  generation: number;
  phase: 'catching_up' | 'swapping' | 'comparing' | 'done';
  /** Events consumed into the shadow so far (applied, already applied or dead-lettered). */
  processed: number;
  /** Events consumed plus offsets still to consume (grows while events keep flowing; an estimate on a transactionally written topic, whose markers take offsets). */
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
 * live generation keeps serving, in named phases: start (the rebuild lock: one rebuild per projection;
 * a new generation), seed (start offsets and the shadow's checkpoints just before them), catch up (a
 * consumer group of its own), swap (live paused only for the swap transaction: the shadow must have
 * applied at least what live has, then the reader views are repointed; readers waiting on the view
 * lock continue on the new tables, none fails) and retire (the old generation dropped). With `dryRun`
 * the generations are compared instead (row counts and checksums at identical offsets) and the shadow
 * is dropped. See docs/projector.md.
 */
export async function rebuildProjection(options: RebuildOptions): Promise<RebuildResult> {
  const { config } = options;
  const o = ident(config.projector.schema);
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
  let rebuildLock: pg.PoolClient | undefined;
  try {
    // Phase 1, start: the rebuild lock, then a new shadow generation.
    rebuildLock = await acquireRebuildLock(pool, config.projector.schema, name);
    const previousGeneration = await ensureLiveGeneration(pool, config.projector.schema, projection, logger);
    const generation = await createShadowGeneration(pool, config.projector.schema, projection);
    logger.info({ projection: name, generation, from: options.from ?? 'beginning', dryRun: options.dryRun ?? false }, 'rebuild started');

    // Phase 2, seed: start offsets, and the shadow's checkpoints just before them.
    await admin.connect();
    await ensureDeadLetterTopics(admin, projection.topics, { replication: config.kafka, logger });
    const { start, high } = await startOffsets(admin, projection.topics, options.from ?? 'beginning');
    const refreshHigh = async (): Promise<void> => {
      for (const topic of projection.topics) for (const p of await admin.fetchTopicOffsets(topic)) high.set(`${topic}/${p.partition}`, BigInt(p.high));
    };
    const position = new Map(start);
    let events = 0;
    await seedShadowCheckpoints(pool, config.projector.schema, name, generation, start);

    // Phase 3, catch up: a consumer group of its own applies the topics to the shadow.
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    consumer = await consumeBatches({
      kafka,
      pool,
      decoder,
      producer,
      target: { projection, outboxSchema: config.projector.schema, generation, snapshotEvery: config.projector.snapshotEvery, logger },
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
      // Events counted as handled (applied, already applied, dead-lettered): offsets also count transaction markers.
      onApplied(_topic, _partition, result) {
        events += result.applied + result.skippedDuplicates + result.deadLettered.length;
      },
      // The consumer's position, past transaction markers: compared with the last stable offsets below.
      onPosition(topic, partition, { next }) {
        const k = `${topic}/${partition}`;
        if (next > (position.get(k) ?? -1n)) position.set(k, next);
      },
      logger: logger.child({ projection: name, generation }),
      ...(metrics ? { metrics } : {}),
    });

    let counted = 0; // events already added to the rebuild counter
    // Progress: events handled so far; the ratio and the time left from offsets (markers included).
    const progress = (phase: RebuildProgress['phase']): RebuildProgress => {
      let passed = 0n;
      let remaining = 0n;
      for (const [k, s] of start) {
        const pos = position.get(k) ?? s;
        passed += pos - s;
        const h = high.get(k) ?? pos;
        // Once swapped (or compared), what arrived since is the live generation's: nothing remains.
        if (h > pos && phase !== 'done') remaining += h - pos;
      }
      const seconds = (Date.now() - started) / 1000;
      const offsetRate = seconds > 0 ? Number(passed) / seconds : 0;
      const total = Number(passed + remaining);
      const p: RebuildProgress = {
        projection: name,
        generation,
        phase,
        processed: events,
        total: events + Number(remaining),
        eventsPerSecond: Math.round(seconds > 0 ? events / seconds : 0),
        etaSeconds: remaining === 0n ? 0 : offsetRate > 0 ? Number(remaining) / offsetRate : null,
        ratio: total === 0 ? 1 : Number(passed) / total,
      };
      metrics?.rebuildProgress.set({ projection: name }, p.ratio);
      metrics?.rebuildEventsPerSecond.set({ projection: name }, p.eventsPerSecond);
      if (p.processed > counted) {
        metrics?.rebuildEventsTotal.inc({ projection: name }, p.processed - counted);
        counted = p.processed;
      }
      return p;
    };

    // Phase 4, swap (or compare, dry run) once caught up with the topics.
    const shadow: Shadow = { pool, outboxSchema: config.projector.schema, projection, generation, logger };
    let lastReport = 0;
    let lockCheckedAt = Date.now();
    let swapAttempts = 0;
    let comparison: ComparisonReport | undefined;
    let finished = false;
    while (!finished) {
      if (options.signal?.aborted) throw new OutboxError('SHUTDOWN', `rebuild of ${name} aborted`);
      if (options.timeoutMs !== undefined && Date.now() - started > options.timeoutMs)
        throw new OutboxError('INTERNAL', `rebuild of ${name} did not catch up within ${options.timeoutMs} ms`);
      await sleep(100, options.signal);
      if (Date.now() - lockCheckedAt >= 5000) {
        // The rebuild lock lives as long as its connection: a lost connection means another rebuild may start.
        await rebuildLock.query('SELECT 1').catch((err: unknown) => {
          throw new OutboxError('FENCED', `rebuild of ${name}: the connection holding the rebuild lock was lost (${errorMessage(err)})`, { cause: err });
        });
        lockCheckedAt = Date.now();
      }
      // Caught up: the consumer has fetched every partition up to its last stable offset (admin offsets are
      // read_committed), markers included; never "last applied + 1 = high watermark", which a topic written
      // in transactions never satisfies. The offsets are those read on the previous round: a topic under
      // constant writes rarely has every partition at its end at one moment, and the swap itself waits,
      // with live paused, for the exact offsets live has.
      const caughtUp = [...high].every(([k, h]) => (position.get(k) ?? start.get(k) ?? 0n) >= h);
      await refreshHigh();
      if (caughtUp || Date.now() - lastReport >= (options.progressIntervalMs ?? 1000)) {
        lastReport = Date.now();
        onProgress(progress('catching_up'));
      }
      if (!caughtUp) continue;
      if (options.dryRun) {
        onProgress(progress('comparing'));
        comparison = await compareGenerations(shadow);
        finished = comparison !== undefined;
      } else {
        onProgress(progress('swapping'));
        finished = await swapIn(shadow);
        // Live runs undisturbed for a while before the next attempt.
        if (!finished) await sleep(Math.min(4 * SWAP_PAUSE_MS * ++swapAttempts, 5000), options.signal);
      }
    }
    await consumer.stop();
    consumer = undefined;

    // Phase 5, retire: drop the generation that is not live (the old one, or the dry run's shadow).
    if (options.dryRun) {
      await dropGeneration(pool, config.projector.schema, name, generation);
    } else {
      // The swapped-out generation: nobody writes it any more; readers of it finish first (DROP waits for their locks).
      await dropGeneration(pool, config.projector.schema, name, previousGeneration).catch((err: unknown) =>
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
    if (rebuildLock) await releaseRebuildLock(rebuildLock, config.projector.schema, name);
    if (ownPool) await pool.end().catch(() => undefined);
    untrack();
  }
}

function rebuildLockKey(outboxSchema: string, projection: string): string {
  return `${liveLockKey(outboxSchema, projection)}:rebuild`;
}

/**
 * One rebuild of a projection at a time: a session-level advisory lock held on a connection of its own
 * for the whole rebuild (a crashed rebuild's session ends and releases it). A second rebuild is refused
 * with ALREADY_RUNNING, never allowed to drop the first one's shadow.
 */
async function acquireRebuildLock(pool: pg.Pool, outboxSchema: string, projection: string): Promise<pg.PoolClient> {
  const lock = await pool.connect();
  let got = false;
  try {
    const { rows } = await lock.query<{ ok: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS ok', [rebuildLockKey(outboxSchema, projection)]);
    got = rows[0]?.ok === true;
  } finally {
    if (!got) lock.release();
  }
  if (got) return lock;
  const { rows: building } = await pool.query<{ generation: number; created_at: Date }>(
    `SELECT generation, created_at FROM ${ident(outboxSchema)}.projector_generations WHERE projection = $1 AND status = 'building' ORDER BY generation DESC LIMIT 1`,
    [projection],
  );
  const b = building[0];
  throw new OutboxError(
    'ALREADY_RUNNING',
    `a rebuild of projection ${projection} is already running${b ? ` (building generation ${b.generation} since ${b.created_at.toISOString()})` : ''}; wait for it to finish or stop it first`,
    { details: { projection, ...(b ? { generation: b.generation } : {}) } },
  );
}

async function releaseRebuildLock(lock: pg.PoolClient, outboxSchema: string, projection: string): Promise<void> {
  await lock.query('SELECT pg_advisory_unlock(hashtext($1))', [rebuildLockKey(outboxSchema, projection)]).then(
    () => lock.release(),
    (err: unknown) => lock.release(err instanceof Error ? err : true),
  );
}

/** A new 'building' generation with empty tables; shadows of crashed rebuilds are dropped (the rebuild lock says none is running). */
async function createShadowGeneration(pool: pg.Pool, outboxSchema: string, projection: Projection): Promise<number> {
  const o = ident(outboxSchema);
  return withTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${liveLockKey(outboxSchema, projection.name)}:setup`]);
    const stale = await c.query<{ generation: number; pg_schema: string }>(
      `SELECT generation, pg_schema FROM ${o}.projector_generations WHERE projection = $1 AND status = 'building'`,
      [projection.name],
    );
    for (const s of stale.rows) {
      await c.query(`DROP SCHEMA IF EXISTS ${ident(s.pg_schema)} CASCADE`);
      await c.query(`UPDATE ${o}.projector_generations SET status = 'retired' WHERE projection = $1 AND generation = $2`, [projection.name, s.generation]);
    }
    const { rows } = await c.query<{ g: number }>(`SELECT COALESCE(max(generation), 0) + 1 AS g FROM ${o}.projector_generations WHERE projection = $1`, [projection.name]);
    const g = rows[0]!.g;
    await createGenerationTables(c, { outboxSchema, projection, generation: g, status: 'building' });
    return g;
  });
}

/** Per `topic/partition`: where the shadow starts (the log start, or the first offset at the timestamp) and the high watermark. */
async function startOffsets(admin: Admin, topics: string[], from: 'beginning' | { timestamp: Date | number }): Promise<{ start: Offsets; high: Offsets }> {
  const start: Offsets = new Map();
  const high: Offsets = new Map();
  for (const topic of topics) {
    const offsets = await admin.fetchTopicOffsets(topic);
    // kafkajs answers the high watermark for a partition with no message at or after the timestamp.
    const byTs = from !== 'beginning' ? await admin.fetchTopicOffsetsByTimestamp(topic, new Date(from.timestamp).getTime()) : undefined;
    for (const p of offsets) {
      const ts = byTs?.find((x) => x.partition === p.partition)?.offset;
      start.set(`${topic}/${p.partition}`, ts !== undefined && BigInt(ts) >= 0n ? BigInt(ts) : BigInt(p.low));
      high.set(`${topic}/${p.partition}`, BigInt(p.high));
    }
  }
  return { start, high };
}

/**
 * The shadow's checkpoints start just before its start offsets: a partition with no event after the
 * start (a quiet one, with a timestamp) still has a checkpoint for the swap to compare, and a topic whose
 * beginning was deleted by retention is read from its log start without a refused gap.
 */
async function seedShadowCheckpoints(pool: pg.Pool, outboxSchema: string, projection: string, generation: number, start: Offsets): Promise<void> {
  const seeds = [...start].map(([k, offset]) => ({ topic: k.slice(0, k.lastIndexOf('/')), partition: Number(k.slice(k.lastIndexOf('/') + 1)), last: offset - 1n }));
  await pool.query(
    `INSERT INTO ${ident(outboxSchema)}.projector_offsets (projection, generation, topic, partition, last_offset)
     SELECT $1, $2, t, p, l FROM unnest($3::text[], $4::int[], $5::bigint[]) AS x(t, p, l)
     ON CONFLICT (projection, generation, topic, partition) DO NOTHING`,
    [projection, generation, seeds.map((x) => x.topic), seeds.map((x) => x.partition), seeds.map((x) => x.last.toString())],
  );
}

/** A rebuild's shadow generation and where it lives. */
interface Shadow {
  pool: pg.Pool;
  /** The projector schema. */
  outboxSchema: string;
  projection: Projection;
  generation: number;
  logger: Logger;
}

/** Longest time live is paused while a swap waits for the shadow's last batch (see swapIn). */
const SWAP_PAUSE_MS = 500;

/**
 * Swap the shadow in once it has applied at least every offset live has. The rebuild waits for its
 * shadow to catch up with the topics without any lock; only then is live paused (the projection's
 * advisory lock, exclusive, for this transaction only: it waits for the live batch in flight), and the
 * shadow, at most a batch or so behind, gets SWAP_PAUSE_MS to reach live's frozen offsets while it keeps
 * advancing; otherwise live is released at once and false returned (the caller tries again later).
 * The reader views and the live generation are repointed in the same transaction.
 */
async function swapIn(shadow: Shadow): Promise<boolean> {
  const { pool, outboxSchema, projection, generation, logger } = shadow;
  const o = ident(outboxSchema);
  const key = liveLockKey(outboxSchema, projection.name);
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    try {
      await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [key]);
      const { rows } = await c.query<{ live_generation: number }>(`SELECT live_generation FROM ${o}.projector_projections WHERE projection = $1`, [projection.name]);
      const liveGen = rows[0]!.live_generation;
      const live = await offsetsOf(c, o, projection.name, liveGen);
      const deadline = Date.now() + SWAP_PAUSE_MS;
      // Read the shadow's checkpoints outside this transaction's snapshot (the shadow commits meanwhile).
      while (!covers(await offsetsOf(pool, o, projection.name, generation), live, false, projection.topics)) {
        if (Date.now() > deadline) {
          await c.query('ROLLBACK');
          logger.debug({ projection: projection.name, generation }, 'shadow still behind live; live released, swap retried later');
          return false;
        }
        await sleep(20);
      }
      await pointViews(c, outboxSchema, projection, generationSchema(outboxSchema, projection.name, generation));
      await c.query(`UPDATE ${o}.projector_projections SET live_generation = $2, updated_at = now() WHERE projection = $1`, [projection.name, generation]);
      await c.query(`UPDATE ${o}.projector_generations SET status = 'retired' WHERE projection = $1 AND generation = $2`, [projection.name, liveGen]);
      await c.query(`UPDATE ${o}.projector_generations SET status = 'live', swapped_at = now() WHERE projection = $1 AND generation = $2`, [projection.name, generation]);
      await c.query('COMMIT');
      logger.info({ projection: projection.name, generation, previous: liveGen }, 'shadow generation swapped in');
      return true;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
  } finally {
    c.release();
  }
}

/**
 * Freeze both generations (both advisory locks) at identical offsets and compare every table. Returns
 * undefined when the offsets are not identical at that moment (the caller tries again).
 */
async function compareGenerations(shadow: Shadow): Promise<ComparisonReport | undefined> {
  const { pool, outboxSchema, projection, generation, logger } = shadow;
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
        tables.push({
          table: t,
          liveRows: a.rows,
          shadowRows: b.rows,
          liveChecksum: a.checksum,
          shadowChecksum: b.checksum,
          equal: a.rows === b.rows && a.checksum === b.checksum,
        });
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
  await withTransaction(pool, async (c) => {
    await c.query(`DROP SCHEMA IF EXISTS ${ident(generationSchema(outboxSchema, projection, generation))} CASCADE`);
    await c.query(`DELETE FROM ${o}.projector_offsets WHERE projection = $1 AND generation = $2`, [projection, generation]);
    await c.query(`DELETE FROM ${o}.projector_seen_events WHERE projection = $1 AND generation = $2`, [projection, generation]);
    await c.query(`UPDATE ${o}.projector_generations SET status = 'retired' WHERE projection = $1 AND generation = $2`, [projection, generation]);
  });
}
