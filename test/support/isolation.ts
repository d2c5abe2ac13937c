import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { adminUrl, withDatabase } from './global-setup';

/** A name unique to this test run: `<prefix>_<file>_<random>` (lower case, safe for databases, topics, groups). */
export function uniqueName(prefix: string): string {
  const file = path
    .basename(expect.getState().testPath ?? 'test')
    .replace(/\.test\.ts$/, '')
    .replace(/[^a-z0-9]+/gi, '_')
    .toLowerCase();
  return `${prefix}_${file}_${randomBytes(4).toString('hex')}`.slice(0, 60);
}

export interface TestDatabase {
  name: string;
  url: string;
  pool: pg.Pool;
}

/**
 * A database of this test file's own, cloned from the migrated template. Call at the top level of a
 * test file; the returned object is filled in beforeAll. It is dropped in afterAll unless a test of the
 * file failed: then it is kept (and its name printed) as evidence.
 */
export function useTestDatabase(options: { poolSize?: number } = {}): TestDatabase {
  const db = { name: '', url: '', pool: undefined as unknown as pg.Pool };
  beforeAll(async () => {
    const base = process.env.DATABASE_URL!;
    const template = process.env.OUTBOX_TEST_TEMPLATE_DB!;
    db.name = uniqueName('t');
    const admin = new pg.Client({ connectionString: adminUrl(base) });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${db.name}" TEMPLATE "${template}"`);
    } finally {
      await admin.end();
    }
    db.url = withDatabase(base, db.name);
    db.pool = new pg.Pool({ connectionString: db.url, max: options.poolSize ?? 10 });
    db.pool.on('error', () => undefined);
  });
  afterAll(async () => {
    await db.pool?.end();
    if (!db.name) return;
    if ((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed) {
      process.stderr.write(`kept database ${db.name} of a failed test for inspection\n`);
      return;
    }
    const admin = new pg.Client({ connectionString: adminUrl(process.env.DATABASE_URL!) });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${db.name}" WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  });
  return db;
}
