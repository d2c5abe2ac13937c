import pg from 'pg';
import { adminUrl, withDatabase } from '../support/global-setup';
import { uniqueName } from '../support/isolation';

/**
 * Scratch databases and roles for the migration and privilege tests: empty databases (not cloned from
 * the migrated template) and cluster-global roles with names unique to the run, all dropped in afterAll
 * unless a test failed (then they are kept as evidence, like useTestDatabase's).
 */
export interface Scratch {
  /** Run `fn` on a connection to the maintenance database as the test's superuser. */
  admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T>;
  /** A new, empty database; returns its URL (as the test's superuser). */
  database(): Promise<string>;
  /** A role name unique to this run, dropped in afterAll (after the scratch databases). */
  role(prefix: string): string;
  /** A connection to `url`, optionally logged in as `user` (the shared cluster trusts local connections). */
  connect(url: string, user?: string): Promise<pg.Client>;
}

export function useScratch(): Scratch {
  const databases: string[] = [];
  const roles: string[] = [];
  const clients: pg.Client[] = [];

  async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const c = new pg.Client({ connectionString: adminUrl(process.env.DATABASE_URL!) });
    await c.connect();
    try {
      return await fn(c);
    } finally {
      await c.end();
    }
  }

  afterAll(async () => {
    for (const c of clients) await c.end().catch(() => undefined);
    if ((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed) {
      process.stderr.write(`kept databases ${databases.join(', ')} and roles ${roles.join(', ')} of a failed test for inspection\n`);
      return;
    }
    await admin(async (c) => {
      for (const name of databases) await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      for (const role of roles) await c.query(`DROP ROLE IF EXISTS "${role}"`);
    });
  });

  return {
    admin,
    async database() {
      const name = uniqueName('m');
      await admin((c) => c.query(`CREATE DATABASE "${name}"`));
      databases.push(name);
      return withDatabase(process.env.DATABASE_URL!, name);
    },
    role(prefix: string) {
      const name = `${prefix}_${uniqueName('r').slice(-8)}`;
      roles.push(name);
      return name;
    },
    async connect(url: string, user?: string) {
      const u = new URL(url);
      if (user !== undefined) u.username = user;
      const c = new pg.Client({ connectionString: u.toString() });
      await c.connect();
      clients.push(c);
      return c;
    },
  };
}
