import pg from 'pg';
import { DEFAULT_SCHEMA, defaultProjectorSchema } from '../../core/config';
import { silentLogger } from '../../core/logger';
import { migrate, migrationsDigest } from '../../infra/migrate';
import { ensureStack } from './stack';

/**
 * Once per `jest` run: make sure PostgreSQL, Kafka and the registry are up (starting the local stack if
 * needed), export their addresses to the test files, and build the migrated template database that
 * every test file clones (CREATE DATABASE ... TEMPLATE), named after a digest of the migrations.
 */
export default async function globalSetup(): Promise<void> {
  const env = await ensureStack();
  for (const name of ['DATABASE_URL', 'KAFKA_BROKERS', 'SCHEMA_REGISTRY_URL'] as const) process.env[name] = env[name];
  process.env.DATABASE_URL = withSearchPath(env.DATABASE_URL!);
  const template = `outbox_tpl_${migrationsDigest()}`;
  process.env.OUTBOX_TEST_TEMPLATE_DB = template;

  const admin = new pg.Client({ connectionString: adminUrl(env.DATABASE_URL!) });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [template]);
    if (exists.rowCount === 0) {
      await admin.query(`CREATE DATABASE "${template}"`);
      const c = new pg.Client({ connectionString: withDatabase(env.DATABASE_URL!, template) });
      await c.connect();
      try {
        await migrate(c, { schema: DEFAULT_SCHEMA, projectorSchema: defaultProjectorSchema(DEFAULT_SCHEMA), logger: silentLogger() });
      } catch (err) {
        await c.end();
        await admin.query(`DROP DATABASE IF EXISTS "${template}"`);
        throw err;
      }
      await c.end();
      await admin.query(`ALTER DATABASE "${template}" WITH IS_TEMPLATE true`);
    }
    // Several checkouts (git worktrees) may share one PostgreSQL, each with its own migrations:
    // OUTBOX_TEST_KEEP_TEMPLATES=1 keeps the other checkouts' templates.
    if (process.env.OUTBOX_TEST_KEEP_TEMPLATES !== '1') await dropStaleTemplates(admin, template);
  } finally {
    await admin.end();
  }
}

/** Templates built from older migrations are of no further use: drop them (skipping any still in use). */
async function dropStaleTemplates(admin: pg.Client, current: string): Promise<void> {
  const { rows } = await admin.query<{ datname: string }>("SELECT datname FROM pg_database WHERE datname LIKE 'outbox\\_tpl\\_%' AND datname <> $1", [current]);
  for (const { datname } of rows) {
    try {
      await admin.query(`ALTER DATABASE "${datname}" WITH IS_TEMPLATE false`);
      await admin.query(`DROP DATABASE "${datname}"`);
    } catch {
      // in use by a concurrent run: leave it
    }
  }
}

/**
 * The search_path of test connections: the default outbox and projector schemas, then public. Tests
 * name tables unqualified (`INSERT INTO outbox ...`, `SELECT ... FROM audit_log`), as a service whose
 * connection sets its search_path does.
 */
export const TEST_SEARCH_PATH = [DEFAULT_SCHEMA, defaultProjectorSchema(DEFAULT_SCHEMA), 'public'];

/** `url` with a connection option that sets the search_path (understood by node-postgres, psql and pg_dump). */
export function withSearchPath(url: string, searchPath: string[] = TEST_SEARCH_PATH): string {
  const u = new URL(url);
  u.searchParams.delete('options');
  const rest = u.search.replace(/^\?/, '');
  u.search = `?${rest ? `${rest}&` : ''}options=${encodeURIComponent(`-c search_path=${searchPath.join(',')}`)}`;
  return u.toString();
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export function adminUrl(url: string): string {
  return withDatabase(url, 'postgres');
}
