import { isOutboxError } from '../../core/errors';
import { silentLogger } from '../../core/logger';
import { migrate } from '../../infra/migrate';
import { childEnv, emptyEnvFile, runOutbox } from '../cli/run-outbox';
import { useScratch } from './scratch';

// The roles the migrations grant to: their names are checked before they reach any SQL, and roles that
// already exist are used as they are, so a migrating user without CREATEROLE can migrate.
const logger = silentLogger();
const scratch = useScratch();

test.each([['bad"role'], ['a$$b'], ["x'; DROP TABLE t; --"], ['Outbox_App'], ['pg_app'], ['1app'], ['a'.repeat(64)]])(
  'migrate() refuses the role name %j before touching the database',
  async (appRole) => {
    const url = await scratch.database();
    const c = await scratch.connect(url);
    const err = await migrate(c, { schema: 'outbox', appRole, logger }).catch((e: unknown) => e);
    expect(isOutboxError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toMatch(/^app role must be a lower-case SQL identifier/);
    const relay = await migrate(c, { schema: 'outbox', relayRole: appRole, logger }).catch((e: unknown) => e);
    expect((relay as Error).message).toMatch(/^relay role must be a lower-case SQL identifier/);
    const { rows } = await c.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'outbox'`);
    expect(rows).toEqual([]);
  },
);

test('outbox migrate --app-role refuses a name that is not a plain SQL identifier (usage error, exit code 2)', async () => {
  const url = await scratch.database();
  const r = await runOutbox(['migrate', '--app-role', 'x"y'], childEnv({ DATABASE_URL: url, OUTBOX_ENV_FILE: emptyEnvFile() }));
  expect(r.code).toBe(2);
  expect(r.stderr).toContain('--app-role must be a lower-case SQL identifier');
  const c = await scratch.connect(url);
  expect((await c.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'outbox'`)).rows).toEqual([]);
});

/** A login role without CREATEROLE (nor superuser) that owns a new database. */
async function unprivilegedMigrator(): Promise<{ url: string; migrator: string }> {
  const migrator = scratch.role('ko_mig');
  await scratch.admin((c) => c.query(`CREATE ROLE "${migrator}" LOGIN NOSUPERUSER NOCREATEROLE`));
  const url = await scratch.database();
  await scratch.admin((c) => c.query(`ALTER DATABASE "${new URL(url).pathname.slice(1)}" OWNER TO "${migrator}"`));
  return { url, migrator };
}

/** Role names unique to this run for every role the migrations grant to. */
function roleNames() {
  return { appRole: scratch.role('ko_app'), ownerRole: scratch.role('ko_own'), relayRole: scratch.role('ko_rel'), projectorRole: scratch.role('ko_prj') };
}

test('a user without CREATEROLE migrates when the roles already exist (and it is a member of the owner role)', async () => {
  const { url, migrator } = await unprivilegedMigrator();
  const roles = roleNames();
  await scratch.admin(async (c) => {
    for (const r of Object.values(roles)) await c.query(`CREATE ROLE "${r}" NOLOGIN`);
    await c.query(`GRANT "${roles.ownerRole}" TO "${migrator}"`);
  });
  const c = await scratch.connect(url, migrator);
  const applied = await migrate(c, { schema: 'outbox', ...roles, logger });
  expect(applied).toContain('0001_outbox');
  const { rows } = await c.query(
    `SELECT has_table_privilege($1, 'outbox.outbox', 'INSERT') AS app_insert, has_table_privilege($2, 'outbox.outbox_delivery', 'UPDATE') AS relay_update,
            (SELECT tableowner FROM pg_tables WHERE schemaname = 'outbox' AND tablename = 'outbox') AS owner`,
    [roles.appRole, roles.relayRole],
  );
  expect(rows).toEqual([{ app_insert: true, relay_update: true, owner: roles.ownerRole }]);
  // And events can be appended: the trigger functions run as the owner role.
  const app = await scratch.connect(url);
  await app.query('BEGIN');
  await app.query(`SET LOCAL ROLE "${roles.appRole}"`);
  await app.query(`INSERT INTO outbox.outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('a', '1', 'E', 1, '{}', 'u', 't')`);
  await app.query('COMMIT');
});

test('a user without CREATEROLE is told which role to create when one is missing', async () => {
  const { url, migrator } = await unprivilegedMigrator();
  const roles = roleNames();
  await scratch.admin(async (c) => {
    for (const r of [roles.ownerRole, roles.relayRole, roles.projectorRole]) await c.query(`CREATE ROLE "${r}" NOLOGIN`);
    await c.query(`GRANT "${roles.ownerRole}" TO "${migrator}"`);
  });
  const c = await scratch.connect(url, migrator);
  const err = await migrate(c, { schema: 'outbox', ...roles, logger }).catch((e: unknown) => e);
  expect(isOutboxError(err, 'MIGRATION_FAILED')).toBe(true);
  expect((err as Error).message).toContain(`role "${roles.appRole}" does not exist and the migrating user may not create roles`);
  expect((err as Error).message).toContain(`CREATE ROLE "${roles.appRole}" NOLOGIN`);
});

test('a user without CREATEROLE is told to become a member of the owner role', async () => {
  const { url, migrator } = await unprivilegedMigrator();
  const roles = roleNames();
  await scratch.admin(async (c) => {
    for (const r of Object.values(roles)) await c.query(`CREATE ROLE "${r}" NOLOGIN`);
  });
  const c = await scratch.connect(url, migrator);
  const err = await migrate(c, { schema: 'outbox', ...roles, logger }).catch((e: unknown) => e);
  expect(isOutboxError(err, 'MIGRATION_FAILED')).toBe(true);
  expect((err as Error).message).toContain(`GRANT "${roles.ownerRole}" TO "${migrator}"`);
});

test('a user with CREATEROLE (not superuser) creates the missing roles and makes itself a member of the owner role', async () => {
  const { url, migrator } = await unprivilegedMigrator();
  await scratch.admin((c) => c.query(`ALTER ROLE "${migrator}" CREATEROLE`));
  const roles = roleNames();
  const c = await scratch.connect(url, migrator);
  expect(await migrate(c, { schema: 'outbox', ...roles, logger })).toContain('0004_least_privilege');
  const { rows } = await c.query(`SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY ($1) ORDER BY 1`, [Object.values(roles)]);
  expect(rows).toEqual(
    Object.values(roles)
      .sort()
      .map((rolname) => ({ rolname, rolcanlogin: false })),
  );
  expect((await c.query(`SELECT pg_has_role($1, 'MEMBER') AS m`, [roles.ownerRole])).rows).toEqual([{ m: true }]);
});

test('migrate refuses roles that would not keep their rights apart: one role twice, a superuser owner, a process role inside the owner', async () => {
  const url = await scratch.database();
  const c = await scratch.connect(url);
  const roles = roleNames();
  const same = await migrate(c, { schema: 'outbox', ...roles, relayRole: roles.appRole, logger }).catch((e: unknown) => e);
  expect(isOutboxError(same, 'CONFIG_INVALID')).toBe(true);
  expect((same as Error).message).toContain('must be four different roles');

  const superOwner = scratch.role('ko_own');
  await c.query(`CREATE ROLE "${superOwner}" NOLOGIN SUPERUSER`);
  const sup = await migrate(c, { schema: 'outbox', ...roles, ownerRole: superOwner, logger }).catch((e: unknown) => e);
  expect(isOutboxError(sup, 'MIGRATION_FAILED')).toBe(true);
  expect((sup as Error).message).toContain(`the owner role "${superOwner}" is a superuser`);

  // The previous call created the missing process roles before it looked at the owner.
  await c.query(`CREATE ROLE "${roles.ownerRole}" NOLOGIN`);
  await c.query(`GRANT "${roles.ownerRole}" TO "${roles.relayRole}"`);
  const inside = await migrate(c, { schema: 'outbox', ...roles, logger }).catch((e: unknown) => e);
  expect(isOutboxError(inside, 'MIGRATION_FAILED')).toBe(true);
  expect((inside as Error).message).toContain(`role "${roles.relayRole}" is a member of the owner role "${roles.ownerRole}"`);
  expect((await c.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'outbox'`)).rows).toEqual([]);
});
