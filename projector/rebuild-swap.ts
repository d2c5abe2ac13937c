import type pg from 'pg';
import { ident, withTransaction } from '../core/pg';
import { sleep } from '../core/retry';
import { shadowLockKey } from './apply-and-checkpoint';
import { generationSchema, liveLockKey, pointViews } from './ensure-generation';
import type { CatchUp, RebuildProgress } from './rebuild-catch-up';
import type { Offsets, Shadow } from './rebuild-prepare';

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

export interface SwapOrCompareOptions {
  shadow: Shadow;
  catchUp: CatchUp;
  /** Compare the shadow with live instead of swapping it in. */
  dryRun: boolean;
  onProgress(p: RebuildProgress): void;
  signal?: AbortSignal;
}

/**
 * Once the shadow has caught up with the topics: swap it in (or, in a dry run, compare it with live).
 * While it is not level with live at that moment, back to catching up, and try again. Returns the dry
 * run's comparison.
 */
export async function swapOrCompare(o: SwapOrCompareOptions): Promise<ComparisonReport | undefined> {
  let swapAttempts = 0;
  for (;;) {
    await o.catchUp.untilCaughtUp();
    if (o.dryRun) {
      o.onProgress(o.catchUp.progress('comparing'));
      const comparison = await compareGenerations(o.shadow);
      if (comparison) return comparison;
    } else {
      o.onProgress(o.catchUp.progress('swapping'));
      if (await swapIn(o.shadow)) return undefined;
      // Live runs undisturbed for a while before the next attempt.
      await sleep(Math.min(4 * SWAP_PAUSE_MS * ++swapAttempts, 5000), o.signal);
    }
  }
}

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

/** Longest time live is paused while a swap waits for the shadow's last batch (see swapIn). */
const SWAP_PAUSE_MS = 500;

/**
 * Swap the shadow in once it has applied at least every offset live has. The rebuild waits for its
 * shadow to catch up with the topics without any lock; only then is live paused (the projection's
 * advisory lock, exclusive, for this transaction only: it waits for the live batch in flight), and the
 * shadow, at most a batch or so behind, gets SWAP_PAUSE_MS to reach live's frozen offsets while it keeps
 * advancing; otherwise the transaction ends having written nothing, which releases live at once, and
 * false is returned (the caller tries again later). The reader views and the live generation are
 * repointed in the same transaction.
 */
async function swapIn(shadow: Shadow): Promise<boolean> {
  const { pool, outboxSchema, projection, generation, logger } = shadow;
  const o = ident(outboxSchema);
  // The generation swapped out, or undefined when the shadow did not reach live in time.
  const previous = await withTransaction(pool, async (c): Promise<number | undefined> => {
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [liveLockKey(outboxSchema, projection.name)]);
    const { rows } = await c.query<{ live_generation: number }>(`SELECT live_generation FROM ${o}.projector_projections WHERE projection = $1`, [projection.name]);
    const liveGen = rows[0]!.live_generation;
    const live = await offsetsOf(c, o, projection.name, liveGen);
    const deadline = Date.now() + SWAP_PAUSE_MS;
    // Read the shadow's checkpoints outside this transaction's snapshot (the shadow commits meanwhile).
    while (!covers(await offsetsOf(pool, o, projection.name, generation), live, false, projection.topics)) {
      if (Date.now() > deadline) return undefined;
      await sleep(20);
    }
    await pointViews(c, outboxSchema, projection, generationSchema(outboxSchema, projection.name, generation));
    await c.query(`UPDATE ${o}.projector_projections SET live_generation = $2, updated_at = now() WHERE projection = $1`, [projection.name, generation]);
    await c.query(`UPDATE ${o}.projector_generations SET status = 'retired' WHERE projection = $1 AND generation = $2`, [projection.name, liveGen]);
    await c.query(`UPDATE ${o}.projector_generations SET status = 'live', swapped_at = now() WHERE projection = $1 AND generation = $2`, [projection.name, generation]);
    return liveGen;
  });
  if (previous === undefined) {
    logger.debug({ projection: projection.name, generation }, 'shadow still behind live; live released, swap retried later');
    return false;
  }
  logger.info({ projection: projection.name, generation, previous }, 'shadow generation swapped in');
  return true;
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
      const shadowOffsets = await offsetsOf(c, o, projection.name, generation);
      if (!covers(shadowOffsets, live, true, projection.topics)) {
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
