import type pg from 'pg';
import { errorMessage } from '../core/errors';
import { ident, withTransaction } from '../core/pg';
import { generationSchema } from './ensure-generation';
import type { CatchUp, RebuildProgress } from './rebuild-catch-up';
import { releaseRebuildLock, type PreparedShadow, type RebuildRun } from './rebuild-prepare';

export interface CleanUpOptions {
  run: RebuildRun;
  prepared: PreparedShadow;
  catchUp: CatchUp;
  /** The shadow was compared, not swapped in: it is the generation to drop. */
  dryRun: boolean;
  onProgress(p: RebuildProgress): void;
}

/**
 * Once swapped (or compared): stop consuming into the shadow, drop the generation that is not live (the
 * swapped-out one, or the dry run's shadow) and the catch-up's consumer group. Returns the final progress.
 */
export async function cleanUp({ run, prepared, catchUp, dryRun, onProgress }: CleanUpOptions): Promise<RebuildProgress> {
  const { pool, projection, logger } = run;
  const outboxSchema = run.config.projector.schema;
  await catchUp.stop();
  if (dryRun) {
    await dropGeneration({ pool, outboxSchema, projection: projection.name, generation: prepared.shadow.generation });
  } else {
    // The swapped-out generation: nobody writes it any more; readers of it finish first (DROP waits for their locks).
    const generation = prepared.previousGeneration;
    await dropGeneration({ pool, outboxSchema, projection: projection.name, generation }).catch((err: unknown) =>
      logger.warn({ projection: projection.name, generation, err: errorMessage(err) }, 'dropping the old generation failed (left in place)'),
    );
  }
  await run.admin.deleteGroups([run.groupId]).catch(() => undefined);
  const final = catchUp.progress('done');
  onProgress(final);
  return final;
}

/** Close what the rebuild holds open, whether it finished or failed: its consumer and producer, the admin client, the rebuild lock, the pool it opened. */
export async function closeRebuild(run: RebuildRun): Promise<void> {
  const { held } = run;
  await held.consumer?.stop();
  await held.producer?.disconnect().catch(() => undefined);
  await run.admin.disconnect().catch(() => undefined);
  if (held.lock) await releaseRebuildLock(held.lock, run.config.projector.schema, run.projection.name);
  if (held.ownPool) await run.pool.end().catch(() => undefined);
  held.untrack();
}

async function dropGeneration(g: { pool: pg.Pool; outboxSchema: string; projection: string; generation: number }): Promise<void> {
  const o = ident(g.outboxSchema);
  await withTransaction(g.pool, async (c) => {
    await c.query(`DROP SCHEMA IF EXISTS ${ident(generationSchema(g.outboxSchema, g.projection, g.generation))} CASCADE`);
    await c.query(`DELETE FROM ${o}.projector_offsets WHERE projection = $1 AND generation = $2`, [g.projection, g.generation]);
    await c.query(`DELETE FROM ${o}.projector_seen_events WHERE projection = $1 AND generation = $2`, [g.projection, g.generation]);
    await c.query(`UPDATE ${o}.projector_generations SET status = 'retired' WHERE projection = $1 AND generation = $2`, [g.projection, g.generation]);
  });
}
