import type pg from 'pg';
import { isOutboxError } from '../../core/errors';
import { silentLogger } from '../../core/logger';
import { migrate } from '../../infra/migrate';
import { useTestDatabase } from '../support/isolation';
import { useScratch } from './scratch';

// The roles the migrations create, each with only the rights its process uses: the history belongs to
// a NOLOGIN owner; the relay reads it and updates only its delivery rows; the projector reads it and
// works in its own schema; the application appends.
const db = useTestDatabase();
const scratch = useScratch();
const logger = silentLogger();

/** Run `fn` in a transaction as `role` (rolled back); returns the SQLSTATE of a failure, or 'ok'. */
async function as(c: pg.PoolClient, role: string, sql: string): Promise<string> {
  await c.query('BEGIN');
  try {
    await c.query(`SET LOCAL ROLE ${role}`);
    await c.query(sql);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  } finally {
    await c.query('ROLLBACK');
  }
}

const event = (id: string) =>
  `INSERT INTO outbox.outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('lp', '${id}', 'E', 1, '{}', 'u', 't')`;

beforeAll(async () => {
  await db.pool.query(event('seed'));
  // Database privileges live in pg_database and are not copied from the template this database was
  // cloned from; the migration's grant of CREATE on the database is checked on a fresh database below.
  await db.pool.query(`GRANT CREATE ON DATABASE "${db.name}" TO outbox_projector`);
});

test('the history and its functions belong to a NOLOGIN, non-superuser owner role; the trigger functions run as it', async () => {
  const { rows } = await db.pool.query<{ kind: string; name: string; owner: string }>(
    `SELECT 'table' AS kind, tablename AS name, tableowner AS owner FROM pg_tables WHERE schemaname = 'outbox' AND tablename <> 'outbox_migrations'
     UNION ALL
     SELECT 'function', p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p WHERE p.pronamespace = 'outbox'::regnamespace
     ORDER BY 1, 2`,
  );
  expect(rows.length).toBeGreaterThanOrEqual(10);
  for (const r of rows) expect(r).toEqual({ ...r, owner: 'outbox_owner' });
  const role = await db.pool.query(`SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = 'outbox_owner'`);
  expect(role.rows).toEqual([{ rolcanlogin: false, rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false }]);
});

test("the relay's role cannot change the history: no UPDATE, DELETE, TRUNCATE or INSERT on outbox, nothing on the heads, no trigger switched off", async () => {
  const c = await db.pool.connect();
  try {
    const denied = '42501';
    expect(await as(c, 'outbox_relay', `UPDATE outbox.outbox SET payload = '{"forged": true}'`)).toBe(denied);
    expect(await as(c, 'outbox_relay', `DELETE FROM outbox.outbox`)).toBe(denied);
    expect(await as(c, 'outbox_relay', `TRUNCATE outbox.outbox`)).toBe(denied);
    expect(await as(c, 'outbox_relay', event('relay'))).toBe(denied);
    expect(await as(c, 'outbox_relay', `UPDATE outbox.outbox_aggregates SET version = 0`)).toBe(denied);
    expect(await as(c, 'outbox_relay', `SELECT * FROM outbox.outbox_aggregates`)).toBe(denied);
    expect(await as(c, 'outbox_relay', `ALTER TABLE outbox.outbox DISABLE TRIGGER outbox_no_update`)).toBe(denied);
    expect(await as(c, 'outbox_relay', `INSERT INTO outbox.outbox_delivery (id, aggregate_type, aggregate_id, aggregate_version) VALUES (999999, 'x', 'y', 1)`)).toBe(denied);
    expect(await as(c, 'outbox_relay', `CREATE TABLE outbox.planted (x int)`)).toBe(denied);
  } finally {
    c.release();
  }
});

test("the relay's role does its work: reads events, updates and deletes delivery rows, refreshes their statistics, listens", async () => {
  const c = await db.pool.connect();
  try {
    expect(await as(c, 'outbox_relay', `SELECT o.*, d.* FROM outbox.outbox o JOIN outbox.outbox_delivery d ON d.id = o.id`)).toBe('ok');
    expect(await as(c, 'outbox_relay', `UPDATE outbox.outbox_delivery SET delivered_at = now(), attempts = attempts + 1, parked_at = NULL WHERE id > 0`)).toBe('ok');
    expect(await as(c, 'outbox_relay', `DELETE FROM outbox.outbox_delivery WHERE delivered_at IS NOT NULL`)).toBe('ok');
    expect(await as(c, 'outbox_relay', `SELECT outbox.outbox_analyze_delivery()`)).toBe('ok');
    expect(await as(c, 'outbox_relay', `LISTEN kafka_outbox`)).toBe('ok');
    expect(await as(c, 'outbox_relay', `SELECT pg_try_advisory_lock(42), pg_advisory_unlock(42)`)).toBe('ok');
  } finally {
    c.release();
  }
});

test("outbox_analyze_delivery() is the relay's only: the app role may not call it", async () => {
  const c = await db.pool.connect();
  try {
    expect(await as(c, 'outbox_app', `SELECT outbox.outbox_analyze_delivery()`)).toBe('42501');
  } finally {
    c.release();
  }
});

test("the projector's role reads the history, works in its own schema and creates generation schemas, and cannot change the history", async () => {
  const c = await db.pool.connect();
  try {
    expect(await as(c, 'outbox_projector', `SELECT * FROM outbox.outbox`)).toBe('ok');
    expect(await as(c, 'outbox_projector', `INSERT INTO outbox_read.projector_offsets (projection, generation, topic, partition, last_offset) VALUES ('p', 1, 't', 0, 5)`)).toBe(
      'ok',
    );
    expect(await as(c, 'outbox_projector', `UPDATE outbox_read.projector_projections SET live_generation = 2; DELETE FROM outbox_read.projector_seen_events`)).toBe('ok');
    expect(
      await as(
        c,
        'outbox_projector',
        `CREATE SCHEMA outbox_read_prj_t_g1; CREATE TABLE outbox_read_prj_t_g1.users (id text); CREATE VIEW outbox_read.users AS SELECT * FROM outbox_read_prj_t_g1.users`,
      ),
    ).toBe('ok');
    expect(await as(c, 'outbox_projector', `UPDATE outbox.outbox SET payload = '{}'`)).toBe('42501');
    expect(await as(c, 'outbox_projector', `DELETE FROM outbox.outbox_delivery`)).toBe('42501');
    expect(await as(c, 'outbox_projector', event('projector'))).toBe('42501');
  } finally {
    c.release();
  }
});

test('the app role appends (the trigger runs as the owner) and can do nothing else', async () => {
  const c = await db.pool.connect();
  try {
    expect(await as(c, 'outbox_app', event('app'))).toBe('ok');
    expect(await as(c, 'outbox_app', `UPDATE outbox.outbox_delivery SET attempts = 0`)).toBe('42501');
    expect(await as(c, 'outbox_app', `SELECT * FROM outbox_read.projector_offsets`)).toBe('42501');
  } finally {
    c.release();
  }
});

test('a fresh migration lets the projector role create schemas in the database; migrate refuses a schema in which the relay or projector role may create objects', async () => {
  const url = await scratch.database();
  const c = await scratch.connect(url);
  const relayRole = scratch.role('ko_rel');
  const projectorRole = scratch.role('ko_prj');
  const appRole = scratch.role('ko_app');
  await migrate(c, { schema: 'outbox', appRole, relayRole, projectorRole, logger });
  const created = await c.query(`SELECT has_database_privilege($1, current_database(), 'CREATE') AS projector, has_database_privilege($2, current_database(), 'CREATE') AS relay`, [
    projectorRole,
    relayRole,
  ]);
  expect(created.rows).toEqual([{ projector: true, relay: false }]);
  for (const role of [relayRole, projectorRole]) {
    await c.query(`GRANT CREATE ON SCHEMA outbox TO "${role}"`);
    const err = await migrate(c, { schema: 'outbox', appRole, relayRole, projectorRole, logger }).catch((e: unknown) => e);
    expect(isOutboxError(err, 'MIGRATION_FAILED')).toBe(true);
    expect((err as Error).message).toContain(`role "${role}" may create objects in it`);
    await c.query(`REVOKE CREATE ON SCHEMA outbox FROM "${role}"`);
  }
  expect(await migrate(c, { schema: 'outbox', appRole, relayRole, projectorRole, logger })).toEqual([]);
});
