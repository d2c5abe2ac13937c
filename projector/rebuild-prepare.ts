import type { Admin, Kafka, Producer } from 'kafkajs';
import type pg from 'pg';
import type { OutboxConfig } from '../core/config';
import { OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { ident, withTransaction } from '../core/pg';
import type { RunningConsumer } from './consume-batch';
import { ensureDeadLetterTopics } from './dead-letter';
import type { EventDecoderLike } from './decode-message';
import { createGenerationTables, ensureLiveGeneration, liveLockKey } from './ensure-generation';
import type { ProjectorMetrics } from './metrics';
import type { Projection } from './types';

/** Offsets by `topic/partition`. */
export type Offsets = Map<string, bigint>;

/** A rebuild's parts, given by the caller or opened for this rebuild, and what its steps hold open. */
export interface RebuildRun {
  config: OutboxConfig;
  logger: Logger;
  metrics?: ProjectorMetrics;
  projection: Projection;
  pool: pg.Pool;
  kafka: Kafka;
  decoder: EventDecoderLike;
  admin: Admin;
  /** The catch-up's consumer group of its own (deleted once the rebuild is done). */
  groupId: string;
  /** When the rebuild started (Date.now()). */
  started: number;
  /** Opened by the steps, closed by closeRebuild whatever happens (rebuild-clean-up.ts). */
  held: {
    /** Whether the pool was opened for this rebuild (and is ended with it). */
    ownPool: boolean;
    untrack(): void;
    /** The rebuild lock's connection (prepareShadow). */
    lock?: pg.PoolClient;
    /** The dead-letter producer and the shadow's consumer (startCatchUp). */
    producer?: Producer;
    consumer?: RunningConsumer;
  };
}

/** A rebuild's shadow generation and where it lives. */
export interface Shadow {
  pool: pg.Pool;
  /** The projector schema. */
  outboxSchema: string;
  projection: Projection;
  generation: number;
  logger: Logger;
}

export interface PrepareOptions {
  run: RebuildRun;
  from: 'beginning' | { timestamp: Date | number };
  dryRun: boolean;
}

export interface PreparedShadow {
  shadow: Shadow;
  /** The generation live when the rebuild started (swapped out, or compared with). */
  previousGeneration: number;
  /** Per partition, where the shadow starts. */
  start: Offsets;
  /** Per partition, the high watermark (refreshed while catching up). */
  high: Offsets;
}

/**
 * Prepare a rebuild: the rebuild lock (one rebuild per projection), a new shadow generation with empty
 * tables, the dead-letter topics, the start offsets (the log start, or the first offset at the timestamp)
 * and the shadow's checkpoints just before them.
 */
export async function prepareShadow({ run, from, dryRun }: PrepareOptions): Promise<PreparedShadow> {
  const { pool, admin, projection, logger } = run;
  const outboxSchema = run.config.projector.schema;
  run.held.lock = await acquireRebuildLock(pool, outboxSchema, projection.name);
  const previousGeneration = await ensureLiveGeneration(pool, outboxSchema, projection, logger);
  await requireOwnerRole(pool, outboxSchema, projection.name, previousGeneration);
  const generation = await createShadowGeneration(pool, outboxSchema, projection);
  logger.info({ projection: projection.name, generation, from, dryRun }, 'rebuild started');
  await admin.connect();
  await ensureDeadLetterTopics(admin, projection.topics, { replication: run.config.kafka, logger });
  const { start, high } = await startOffsets(admin, projection.topics, from);
  const shadow: Shadow = { pool, outboxSchema, projection, generation, logger };
  await seedShadowCheckpoints(shadow, start);
  return { shadow, previousGeneration, start, high };
}

/**
 * A rebuild runs as the role that owns the live generation (the projector's): tables created under another
 * role would, once swapped in, be out of the projector's reach, and out of its views' (owned by the
 * projector's role: a view reads with its owner's rights, so not even a superuser could read through it).
 */
async function requireOwnerRole(pool: pg.Pool, outboxSchema: string, projection: string, liveGeneration: number): Promise<void> {
  const { rows } = await pool.query<{ owner: string; me: string }>(
    `SELECT pg_catalog.pg_get_userbyid(n.nspowner) AS owner, current_user AS me
       FROM ${ident(outboxSchema)}.projector_generations g JOIN pg_catalog.pg_namespace n ON n.nspname = g.pg_schema
      WHERE g.projection = $1 AND g.generation = $2`,
    [projection, liveGeneration],
  );
  const r = rows[0];
  if (r && r.owner !== r.me) {
    throw new OutboxError(
      'CONFIG_INVALID',
      `projection ${projection}: its live generation ${liveGeneration} is owned by ${r.owner}, but this rebuild runs as ${r.me}; run the rebuild as ${r.owner} (the projector's DATABASE_URL), or the projector could not write the rebuilt tables`,
      { details: { variable: 'DATABASE_URL', projection, owner: r.owner, role: r.me } },
    );
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

export async function releaseRebuildLock(lock: pg.PoolClient, outboxSchema: string, projection: string): Promise<void> {
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
async function seedShadowCheckpoints(shadow: Shadow, start: Offsets): Promise<void> {
  const seeds = [...start].map(([k, offset]) => ({ topic: k.slice(0, k.lastIndexOf('/')), partition: Number(k.slice(k.lastIndexOf('/') + 1)), last: offset - 1n }));
  await shadow.pool.query(
    `INSERT INTO ${ident(shadow.outboxSchema)}.projector_offsets (projection, generation, topic, partition, last_offset)
     SELECT $1, $2, t, p, l FROM unnest($3::text[], $4::int[], $5::bigint[]) AS x(t, p, l)
     ON CONFLICT (projection, generation, topic, partition) DO NOTHING`,
    [shadow.projection.name, shadow.generation, seeds.map((x) => x.topic), seeds.map((x) => x.partition), seeds.map((x) => x.last.toString())],
  );
}
