import type pg from 'pg';
import { isOutboxError } from '../../core/errors';
import { silentLogger } from '../../core/logger';
import { migrate } from '../../infra/migrate';
import { useScratch } from './scratch';

// The outbox's trigger functions run as their owner (SECURITY DEFINER) whenever anyone inserts an event.
// A member of the application role who can create objects somewhere must not be able to make those
// functions call code of theirs: the functions resolve every name in pg_catalog or the outbox schema,
// and `migrate` refuses a schema that PUBLIC or the application role may create objects in.
const logger = silentLogger();
const scratch = useScratch();

const INSERT = `INSERT INTO outbox.outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
                VALUES ('acct', '1', 'Opened', 1, '{}', 'user:1', 't-1') RETURNING aggregate_version`;

async function isSuperuser(c: pg.Client, role: string): Promise<boolean> {
  const { rows } = await c.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = $1', [role]);
  return rows[0]!.rolsuper;
}

/** A migrated database, and a login role that is a member of the app role and may CREATE in the outbox schema. */
async function attackerSetup(): Promise<{ url: string; owner: pg.Client; attacker: pg.Client; attackerRole: string }> {
  const url = await scratch.database();
  const appRole = scratch.role('ko_app');
  const attackerRole = scratch.role('ko_atk');
  const owner = await scratch.connect(url);
  await migrate(owner, { schema: 'outbox', appRole, logger });
  await owner.query(`CREATE ROLE "${attackerRole}" LOGIN IN ROLE "${appRole}"`);
  // A privilege granted after the migration (by mistake, or for an unrelated feature).
  await owner.query(`GRANT CREATE ON SCHEMA outbox TO "${attackerRole}"`);
  const attacker = await scratch.connect(url, attackerRole);
  return { url, owner, attacker, attackerRole };
}

test('a member of the app role who plants nextval(text) in the outbox schema does not become superuser by inserting an event', async () => {
  const { owner, attacker, attackerRole } = await attackerSetup();
  await attacker.query(`
    CREATE FUNCTION outbox.nextval(seq text) RETURNS bigint LANGUAGE plpgsql AS $f$
    BEGIN
      EXECUTE 'ALTER ROLE ${attackerRole} SUPERUSER';
      RETURN pg_catalog.nextval(seq::regclass);
    END
    $f$`);
  const { rows } = await attacker.query<{ aggregate_version: string }>(INSERT);
  expect(rows).toEqual([{ aggregate_version: '1' }]);
  expect(await isSuperuser(owner, attackerRole)).toBe(false);
});

test('a member of the app role who plants pg_notify(text, name) in the outbox schema does not become superuser by inserting an event', async () => {
  const { owner, attacker, attackerRole } = await attackerSetup();
  await attacker.query(`
    CREATE FUNCTION outbox.pg_notify(channel text, payload name) RETURNS void LANGUAGE plpgsql AS $f$
    BEGIN
      EXECUTE 'ALTER ROLE ${attackerRole} SUPERUSER';
    END
    $f$`);
  const { rows } = await attacker.query<{ aggregate_version: string }>(INSERT);
  expect(rows).toEqual([{ aggregate_version: '1' }]);
  expect(await isSuperuser(owner, attackerRole)).toBe(false);
});

test('the trigger functions run with search_path pinned to pg_catalog, pg_temp', async () => {
  const url = await scratch.database();
  const c = await scratch.connect(url);
  await migrate(c, { schema: 'outbox', appRole: scratch.role('ko_app'), logger });
  const { rows } = await c.query<{ proname: string; prosecdef: boolean; proconfig: string[] | null }>(
    `SELECT p.proname, p.prosecdef, p.proconfig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'outbox' AND p.prorettype = 'trigger'::regtype ORDER BY 1`,
  );
  expect(rows.length).toBeGreaterThanOrEqual(3);
  for (const r of rows) expect({ fn: r.proname, config: r.proconfig }).toEqual({ fn: r.proname, config: ['search_path=pg_catalog, pg_temp'] });
  // Every SECURITY DEFINER function in the outbox schema pins its search_path.
  const definers = await c.query<{ proname: string }>(
    `SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'outbox' AND p.prosecdef
        AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)`,
  );
  expect(definers.rows).toEqual([]);
});

async function refusal(fn: () => Promise<unknown>): Promise<Error> {
  const err = await fn().then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  if (err === undefined) throw new Error('migrate succeeded; expected it to refuse the schema');
  return err;
}

test('migrate refuses a schema in which PUBLIC may create objects, naming the schema and PUBLIC', async () => {
  const url = await scratch.database();
  const c = await scratch.connect(url);
  await c.query('CREATE SCHEMA shared');
  await c.query('GRANT CREATE ON SCHEMA shared TO PUBLIC');
  const err = await refusal(() => migrate(c, { schema: 'shared', appRole: scratch.role('ko_app'), logger }));
  expect(isOutboxError(err, 'MIGRATION_FAILED')).toBe(true);
  expect(err.message).toMatch(/schema "shared"/);
  expect(err.message).toMatch(/PUBLIC/);
  expect(err.message).toMatch(/REVOKE CREATE ON SCHEMA "shared" FROM PUBLIC/);
  // Nothing was created there.
  const { rows } = await c.query(`SELECT tablename FROM pg_tables WHERE schemaname = 'shared'`);
  expect(rows).toEqual([]);
});

test('migrate refuses the public schema with the CREATE privilege PostgreSQL before 15 granted to PUBLIC', async () => {
  const url = await scratch.database();
  const c = await scratch.connect(url);
  await c.query('GRANT CREATE ON SCHEMA public TO PUBLIC');
  const err = await refusal(() => migrate(c, { schema: 'public', appRole: scratch.role('ko_app'), logger }));
  expect(err.message).toMatch(/schema "public".*PUBLIC/s);
});

test('migrate refuses a schema in which the app role may create objects, naming the role; also once already migrated', async () => {
  const url = await scratch.database();
  const appRole = scratch.role('ko_app');
  const c = await scratch.connect(url);
  expect((await migrate(c, { schema: 'outbox', appRole, logger })).length).toBeGreaterThan(0);
  await c.query(`GRANT CREATE ON SCHEMA outbox TO "${appRole}"`);
  const err = await refusal(() => migrate(c, { schema: 'outbox', appRole, logger }));
  expect(isOutboxError(err, 'MIGRATION_FAILED')).toBe(true);
  expect(err.message).toMatch(/schema "outbox"/);
  expect(err.message).toContain(`role "${appRole}"`);

  // Through a role it inherits from, too.
  await c.query(`REVOKE CREATE ON SCHEMA outbox FROM "${appRole}"`);
  const parent = scratch.role('ko_grp');
  await c.query(`CREATE ROLE "${parent}" NOLOGIN`);
  await c.query(`GRANT "${parent}" TO "${appRole}"`);
  await c.query(`GRANT CREATE ON SCHEMA outbox TO "${parent}"`);
  const viaParent = await refusal(() => migrate(c, { schema: 'outbox', appRole, logger }));
  expect(viaParent.message).toContain(`role "${appRole}"`);
  await c.query(`REVOKE CREATE ON SCHEMA outbox FROM "${parent}"`);
  await c.query(`REVOKE "${parent}" FROM "${appRole}"`);
  expect(await migrate(c, { schema: 'outbox', appRole, logger })).toEqual([]);
});

test('a database migrated by the release before pinned search paths is fixed by migrating again', async () => {
  const url = await scratch.database();
  const appRole = scratch.role('ko_app');
  const attackerRole = scratch.role('ko_atk');
  const owner = await scratch.connect(url);
  expect(await migrate(owner, { schema: 'outbox', appRole, untilVersion: 1, logger })).toEqual(['0001_outbox']);
  await owner.query(INSERT);
  await migrate(owner, { schema: 'outbox', appRole, logger });

  await owner.query(`CREATE ROLE "${attackerRole}" LOGIN IN ROLE "${appRole}"`);
  await owner.query(`GRANT CREATE ON SCHEMA outbox TO "${attackerRole}"`);
  const attacker = await scratch.connect(url, attackerRole);
  await attacker.query(`
    CREATE FUNCTION outbox.nextval(seq text) RETURNS bigint LANGUAGE plpgsql AS $f$
    BEGIN
      EXECUTE 'ALTER ROLE ${attackerRole} SUPERUSER';
      RETURN pg_catalog.nextval(seq::regclass);
    END
    $f$`);
  const { rows } = await attacker.query<{ aggregate_version: string }>(INSERT);
  expect(rows).toEqual([{ aggregate_version: '2' }]);
  expect(await isSuperuser(owner, attackerRole)).toBe(false);
});
