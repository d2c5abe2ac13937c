import type pg from 'pg';
import { OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { ident, withTransaction } from '../core/pg';
import type { Projection } from './types';

/**
 * Generations of a projection's tables. Generation N lives in the PostgreSQL schema
 * `prj_<projection>_g<N>` (prefixed with the projector schema when that is not `public`); readers use the
 * views of the same names in the projector schema, which point at the live generation. (The
 * `outboxSchema` parameters of this folder name the projector schema, OUTBOX_PROJECTOR_SCHEMA.)
 */
export function generationSchema(outboxSchema: string, projection: string, generation: number): string {
  return `${outboxSchema === 'public' ? '' : `${outboxSchema}_`}prj_${projection}_g${generation}`;
}

/** Advisory lock key of a projection: live applies take it shared, a swap exclusive. */
export function liveLockKey(outboxSchema: string, projection: string): string {
  return `kafka-outbox:projector:${outboxSchema}:${projection}`;
}

export function assertProjectionName(p: Projection): void {
  if (!/^[a-z][a-z0-9_]{0,39}$/.test(p.name)) throw new OutboxError('CONFIG_INVALID', `projection name "${p.name}" must match [a-z][a-z0-9_]{0,39}`);
  for (const t of p.tables)
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(t)) throw new OutboxError('CONFIG_INVALID', `table name "${t}" of projection ${p.name} is not a lower-case SQL identifier`);
  if (p.topics.length === 0) throw new OutboxError('CONFIG_INVALID', `projection ${p.name} has no topics`);
}

/** A generation of a projection's tables to create. */
export interface NewGeneration {
  /** The projector schema. */
  outboxSchema: string;
  projection: Projection;
  generation: number;
  status: 'live' | 'building';
}

/** Create generation `generation`'s schema and tables (idempotent for the schema, tables created fresh). */
export async function createGenerationTables(client: pg.ClientBase, g: NewGeneration): Promise<string> {
  const { outboxSchema, projection, generation, status } = g;
  const pgSchema = generationSchema(outboxSchema, projection.name, generation);
  await client.query(`DROP SCHEMA IF EXISTS ${ident(pgSchema)} CASCADE`);
  await client.query(`CREATE SCHEMA ${ident(pgSchema)}`);
  await projection.createTables(client, ident(pgSchema));
  const o = ident(outboxSchema);
  await client.query(`DELETE FROM ${o}.projector_offsets WHERE projection = $1 AND generation = $2`, [projection.name, generation]);
  await client.query(`DELETE FROM ${o}.projector_seen_events WHERE projection = $1 AND generation = $2`, [projection.name, generation]);
  await client.query(`DELETE FROM ${o}.projector_snapshots WHERE projection = $1 AND generation = $2`, [projection.name, generation]);
  await client.query(
    `INSERT INTO ${o}.projector_generations (projection, generation, pg_schema, status) VALUES ($1, $2, $3, $4)
     ON CONFLICT (projection, generation) DO UPDATE SET pg_schema = EXCLUDED.pg_schema, status = EXCLUDED.status, created_at = now(), swapped_at = NULL`,
    [projection.name, generation, pgSchema, status],
  );
  return pgSchema;
}

/** Point the reader views of the projection's tables at `pgSchema` (in the caller's transaction). */
export async function pointViews(client: pg.ClientBase, outboxSchema: string, projection: Projection, pgSchema: string): Promise<void> {
  for (const t of projection.tables) {
    const view = `${ident(outboxSchema)}.${ident(t)}`;
    const target = `${ident(pgSchema)}.${ident(t)}`;
    // A view of the same name owned by another projection is never taken over.
    const existing = await client.query<{ definition: string }>('SELECT definition FROM pg_views WHERE schemaname = $1 AND viewname = $2', [outboxSchema, t]);
    const own = generationSchema(outboxSchema, projection.name, 0).replace(/0$/, '');
    if (existing.rows[0] && !existing.rows[0].definition.includes(own)) {
      throw new OutboxError('CONFIG_INVALID', `table ${t} of projection ${projection.name}: ${outboxSchema}.${t} is already the view of another projection`, {
        details: { projection: projection.name, table: t },
      });
    }
    await client.query('SAVEPOINT point_view');
    try {
      // Same columns: the view keeps its OID, readers waiting on its lock simply see the new definition.
      await client.query(`CREATE OR REPLACE VIEW ${view} AS SELECT * FROM ${target}`);
      await client.query('RELEASE SAVEPOINT point_view');
    } catch {
      // Columns changed: replace the view (a reader waiting on the old one resolves the name again).
      await client.query('ROLLBACK TO SAVEPOINT point_view');
      await client.query(`DROP VIEW IF EXISTS ${view}`);
      await client.query(`CREATE VIEW ${view} AS SELECT * FROM ${target}`);
    }
  }
}

/** Make sure the projection has a live generation (create generation 1 and its views the first time). */
export async function ensureLiveGeneration(pool: pg.Pool, outboxSchema: string, projection: Projection, logger: Logger): Promise<number> {
  assertProjectionName(projection);
  const o = ident(outboxSchema);
  const created = await withTransaction(pool, async (client): Promise<{ generation: number; pgSchema?: string }> => {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`${liveLockKey(outboxSchema, projection.name)}:setup`]);
    const { rows } = await client.query<{ live_generation: number }>(`SELECT live_generation FROM ${o}.projector_projections WHERE projection = $1`, [projection.name]);
    if (rows[0]) return { generation: rows[0].live_generation };
    const pgSchema = await createGenerationTables(client, { outboxSchema, projection, generation: 1, status: 'live' });
    await pointViews(client, outboxSchema, projection, pgSchema);
    await client.query(`INSERT INTO ${o}.projector_projections (projection, live_generation) VALUES ($1, 1)`, [projection.name]);
    return { generation: 1, pgSchema };
  });
  if (created.pgSchema !== undefined) logger.info({ projection: projection.name, pgSchema: created.pgSchema }, 'projection created (generation 1)');
  return created.generation;
}
