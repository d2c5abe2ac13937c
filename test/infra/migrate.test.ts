import { spawnSync } from 'node:child_process';
import pg from 'pg';
import { silentLogger } from '../../core/logger';
import { loadMigrations, migrate } from '../../infra/migrate';
import { appendEvents, verifyChain, withTransaction } from '../../writer';
import { adminUrl, withDatabase } from '../support/global-setup';
import { uniqueName, useTestDatabase } from '../support/isolation';
import { makeEvent } from '../writer/helpers';

// The migrations: idempotent, safe when run concurrently (in one database, and in several databases
// that race to create the cluster-global application role), and installable into any schema.
const logger = silentLogger();
const db = useTestDatabase();
const fresh: string[] = [];
const roles: string[] = [];

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: adminUrl(process.env.DATABASE_URL!) });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A new, empty database (not cloned from the migrated template). */
async function freshDatabase(): Promise<string> {
  const name = uniqueName('m');
  await admin((c) => c.query(`CREATE DATABASE "${name}"`));
  fresh.push(name);
  return withDatabase(process.env.DATABASE_URL!, name);
}

async function connect(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
}

function schemaDump(url: string): string {
  const r = spawnSync('pg_dump', ['--schema-only', '--no-comments', url], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`pg_dump failed: ${r.stderr}`);
  return r.stdout.replace(/^-- Dumped (from|by).*$/gm, '').replace(/^\\(un)?restrict .*$/gm, ''); // \restrict keys are random per dump
}

afterAll(async () => {
  if ((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed) return;
  await admin(async (c) => {
    for (const name of fresh) await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    for (const role of roles) await c.query(`DROP ROLE IF EXISTS "${role}"`);
  });
});

const ALL = loadMigrations().map((m) => m.name);

test('migrations are idempotent: a second run applies nothing and changes nothing', async () => {
  const url = await freshDatabase();
  const c = await connect(url);
  try {
    expect(await migrate(c, { schema: 'public', logger })).toEqual(ALL);
    expect(ALL).toContain('0001_outbox');
    const before = schemaDump(url);
    const recorded = await c.query('SELECT version, name, checksum, applied_at FROM outbox_migrations ORDER BY version');
    expect(await migrate(c, { schema: 'public', logger })).toEqual([]);
    expect(schemaDump(url)).toBe(before);
    expect((await c.query('SELECT version, name, checksum, applied_at FROM outbox_migrations ORDER BY version')).rows).toEqual(recorded.rows);
    expect(before).toContain('CREATE TABLE public.outbox (');
    expect(before).toContain('CREATE TRIGGER outbox_no_truncate BEFORE TRUNCATE ON public.outbox');
  } finally {
    await c.end();
  }
});

test("the projector's tables are created in the projector schema (default <schema>_read), apart from the history", async () => {
  const url = await freshDatabase();
  const c = await connect(url);
  try {
    await migrate(c, { schema: 'history', logger });
    await migrate(c, { schema: 'other', projectorSchema: 'views', logger });
    const { rows } = await c.query<{ schemaname: string; tablename: string }>(
      `SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('history', 'history_read', 'other', 'views') ORDER BY 1, 2`,
    );
    const projectorTables = ['projector_dead_letters', 'projector_generations', 'projector_offsets', 'projector_projections', 'projector_seen_events', 'projector_snapshots'];
    const inSchema = (s: string) => rows.filter((r) => r.schemaname === s).map((r) => r.tablename);
    expect(inSchema('history_read')).toEqual(projectorTables);
    expect(inSchema('views')).toEqual(projectorTables);
    for (const s of ['history', 'other']) {
      expect(inSchema(s)).toEqual(expect.arrayContaining(['outbox', 'outbox_aggregates', 'outbox_delivery', 'outbox_migrations']));
      expect(inSchema(s).filter((t) => t.startsWith('projector_'))).toEqual([]);
    }
  } finally {
    await c.end();
  }
});

test('two concurrent migrate() calls on a fresh database both succeed and apply each migration once', async () => {
  const url = await freshDatabase();
  const [a, b] = await Promise.all([connect(url), connect(url)]);
  try {
    const [ra, rb] = await Promise.all([migrate(a, { schema: 'public', logger }), migrate(b, { schema: 'public', logger })]);
    expect([...ra, ...rb].sort()).toEqual(ALL);
    const { rows } = await a.query<{ name: string }>('SELECT name FROM outbox_migrations ORDER BY version');
    expect(rows.map((r) => r.name)).toEqual(ALL);
    // And the result works.
    expect(await appendEvents(a, [makeEvent('m', '1')])).toMatchObject({ status: 'appended', events: [{ aggregateVersion: 1 }] });
  } finally {
    await a.end();
    await b.end();
  }
});

test('two databases migrated at once race to create a new application role: both succeed', async () => {
  const role = `ko_app_${uniqueName('r').slice(-8)}`;
  roles.push(role);
  const urls = await Promise.all([freshDatabase(), freshDatabase(), freshDatabase()]);
  const clients = await Promise.all(urls.map(connect));
  try {
    const results = await Promise.all(clients.map((c) => migrate(c, { schema: 'public', appRole: role, logger })));
    for (const r of results) expect(r).toEqual(ALL);
    for (const c of clients) {
      await c.query('BEGIN');
      await c.query(`SET LOCAL ROLE "${role}"`);
      expect(await appendEvents(c, [makeEvent('m', 'role')])).toMatchObject({ status: 'appended' });
      const denied = await c.query('DELETE FROM outbox').catch((e: Error) => e);
      expect((denied as Error).message).toBe('permission denied for table outbox');
      await c.query('ROLLBACK');
    }
    const r = await clients[0]!.query(`SELECT rolcanlogin FROM pg_roles WHERE rolname = $1`, [role]);
    expect(r.rows).toEqual([{ rolcanlogin: false }]);
  } finally {
    for (const c of clients) {
      // Leave the role droppable: revoke what the migrations granted in each database.
      await c.query(`DROP OWNED BY "${role}"`).catch(() => undefined);
      await c.end();
    }
  }
});

test('the schema is configurable: migrate into custom_ns and append, verify and get notified there', async () => {
  const c = await db.pool.connect();
  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  try {
    expect(await migrate(c, { schema: 'custom_ns', logger })).toEqual(ALL);
    expect(await migrate(c, { schema: 'custom_ns', logger })).toEqual([]);
    const notes: (string | undefined)[] = [];
    listener.on('notification', (n) => notes.push(n.payload));
    await listener.query('LISTEN kafka_outbox');

    const r = await withTransaction(db.pool, (tx) => appendEvents(tx, [makeEvent('ns', '1'), makeEvent('ns', '1')], { schema: 'custom_ns', expectedVersion: 0 }));
    expect(r).toMatchObject({ status: 'appended', events: [{ aggregateVersion: 1 }, { aggregateVersion: 2 }] });
    // The plain-SQL contract with search_path = custom_ns, as the application role.
    await c.query('BEGIN');
    await c.query('SET LOCAL ROLE outbox_app');
    await c.query('SET LOCAL search_path = custom_ns');
    await c.query(`INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('ns', '1', 'E', 1, '{}', 'a', 't')`);
    await c.query('COMMIT');

    const counts = await c.query<{ custom: string; pub: string }>(
      `SELECT (SELECT count(*) FROM custom_ns.outbox) AS custom, (SELECT count(*) FROM outbox.outbox WHERE aggregate_type = 'ns') AS pub`,
    );
    expect(counts.rows[0]).toEqual({ custom: '3', pub: '0' }); // nothing in the default schema
    expect(await verifyChain(c, { schema: 'custom_ns' })).toMatchObject({ ok: true, checked: 3 });
    for (let i = 0; i < 50 && notes.length < 2; i++) await new Promise((res) => setTimeout(res, 20));
    expect(notes).toEqual(['custom_ns', 'custom_ns']);
  } finally {
    c.release();
    await listener.end();
  }
});
