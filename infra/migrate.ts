import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { ident } from '../core/pg';

/**
 * Applies the numbered SQL files in infra/migrations/ (NNNN_name.sql) in order, each in its own
 * transaction, recording them in <schema>.outbox_migrations. Idempotent; safe when several processes
 * run it at once (a transaction-level advisory lock serializes them).
 *
 * In the SQL files, `:schema` stands for the quoted target schema and `:app_role` for the quoted
 * least-privilege application role.
 */
export const MIGRATIONS_DIR = path.join(__dirname, 'migrations');

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const sql = readFileSync(path.join(dir, file), 'utf8');
      return {
        version: Number(file.slice(0, 4)),
        name: file.replace(/\.sql$/, ''),
        sql,
        checksum: createHash('sha256').update(sql).digest('hex'),
      };
    });
}

/** Digest of all migration files, e.g. to name a template database built from them. */
export function migrationsDigest(dir: string = MIGRATIONS_DIR): string {
  const h = createHash('sha256');
  for (const m of loadMigrations(dir)) h.update(m.name).update(m.checksum);
  return h.digest('hex').slice(0, 12);
}

export interface MigrateOptions {
  schema: string;
  appRole?: string;
  logger: Logger;
}

export function renderMigration(sql: string, options: { schema: string; appRole: string }): string {
  return sql.replace(/:schema\b/g, ident(options.schema)).replace(/:app_role\b/g, ident(options.appRole));
}

/** Apply pending migrations. Returns the names applied by this call. */
export async function migrate(client: pg.ClientBase, options: MigrateOptions): Promise<string[]> {
  const schema = ident(options.schema);
  const appRole = options.appRole ?? 'outbox_app';
  const applied: string[] = [];
  const lockKey = `kafka-outbox:migrate:${options.schema}`;
  for (const m of loadMigrations()) {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockKey]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${schema}.outbox_migrations (
           version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rows } = await client.query<{ checksum: string }>(`SELECT checksum FROM ${schema}.outbox_migrations WHERE version = $1`, [m.version]);
      if (rows[0]) {
        if (rows[0].checksum !== m.checksum) {
          options.logger.warn({ migration: m.name }, 'applied migration differs from the file on disk (left as applied)');
        }
        await client.query('COMMIT');
        continue;
      }
      await client.query(`SET LOCAL search_path TO ${schema}, public`);
      await client.query(renderMigration(m.sql, { schema: options.schema, appRole }));
      await client.query(`INSERT INTO ${schema}.outbox_migrations (version, name, checksum) VALUES ($1, $2, $3)`, [m.version, m.name, m.checksum]);
      await client.query('COMMIT');
      applied.push(m.name);
      options.logger.info({ migration: m.name, schema: options.schema }, 'migration applied');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw new OutboxError('MIGRATION_FAILED', `migration ${m.name} failed: ${(err as Error).message}`, { cause: err, details: { migration: m.name } });
    }
  }
  return applied;
}
