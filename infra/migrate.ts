import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { defaultProjectorSchema } from '../core/config';
import { OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { ident, withTransaction } from '../core/pg';

/**
 * Applies the numbered SQL files in infra/migrations/ (NNNN_name.sql) in order, each in its own
 * transaction, recording them in <schema>.outbox_migrations. Idempotent; safe when several processes
 * run it at once (a transaction-level advisory lock serializes them).
 *
 * In the SQL files, `:schema` stands for the quoted target schema, `:projector_schema` for the quoted
 * schema of the projector's tables and read-model views, and `:app_role`, `:owner_role`, `:relay_role`,
 * `:projector_role` for the quoted roles (see 0004_least_privilege.sql), and `:relay_shards` for the
 * number of relay shards (0006_relay_shards.sql). The roles are created here, when missing, before
 * any migration runs.
 */
export const MIGRATIONS_DIR = path.join(__dirname, 'migrations');

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

/**
 * Earlier texts of migration files that were edited after release in ways that need not be re-applied
 * (by file name: sha256 of the earlier text). A database that recorded one of these is up to date.
 */
const EQUIVALENT_CHECKSUMS: Readonly<Record<string, readonly string[]>> = {
  // 0001 created the application role itself; infra/migrate.ts now creates the roles, only when missing.
  '0001_outbox': ['260a1697fbc3d15ad16f8e8ef496a1800f63c487c4beee41e1d4e16143fd349a'],
};

/** Names the migrations accept for schemas and roles: lower-case SQL identifiers, never quoted into anything else. */
const SQL_IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** Why `name` is not accepted as a schema or role name, or undefined when it is. */
export function identifierProblem(name: string): string | undefined {
  if (SQL_IDENTIFIER.test(name) && !name.startsWith('pg_')) return undefined;
  return `must be a lower-case SQL identifier (a-z, 0-9, _; not starting with a digit or pg_; at most 63 characters), got ${JSON.stringify(name)}`;
}

function checkIdentifier(what: string, name: string): void {
  const problem = identifierProblem(name);
  if (problem) throw new OutboxError('CONFIG_INVALID', `${what} ${problem}`, { details: { field: what, value: name } });
}

export function loadMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  const migrations = readdirSync(dir)
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
  // A version is recorded once: a second file with the same number would never be applied.
  for (let i = 1; i < migrations.length; i++) {
    const [a, b] = [migrations[i - 1]!, migrations[i]!];
    if (a.version === b.version) {
      throw new OutboxError('MIGRATION_FAILED', `migrations ${a.name} and ${b.name} share version ${String(a.version).padStart(4, '0')}: give one of them the next free number`, {
        details: { migrations: [a.name, b.name] },
      });
    }
  }
  return migrations;
}

/** Digest of all migration files, e.g. to name a template database built from them. */
export function migrationsDigest(dir: string = MIGRATIONS_DIR): string {
  const h = createHash('sha256');
  for (const m of loadMigrations(dir)) h.update(m.name).update(m.checksum);
  return h.digest('hex').slice(0, 12);
}

export interface MigrateOptions {
  schema: string;
  /** Schema of the projector's tables and read-model views; default `<schema>_read`. */
  projectorSchema?: string;
  /** Role of the services that append events (INSERT, SELECT); default `outbox_app`. */
  appRole?: string;
  /** NOLOGIN role that owns the history's tables and functions; default `outbox_owner`. */
  ownerRole?: string;
  /** Role of the relay (reads the history, updates its delivery rows); default `outbox_relay`. */
  relayRole?: string;
  /** Role of the projector (reads the history, owns its read model); default `outbox_projector`. */
  projectorRole?: string;
  /** Apply only the migrations up to this version (tests of upgrades from an earlier release). */
  untilVersion?: number;
  /** Shards of the delivery queue (OUTBOX_RELAY_SHARDS), fixed when 0006 is applied; default 32. */
  relayShards?: number;
  logger: Logger;
}

/** Shards of the delivery queue when OUTBOX_RELAY_SHARDS is not set at migrate time. */
export const DEFAULT_RELAY_SHARDS = 32;

export interface MigrationRoles {
  appRole: string;
  ownerRole: string;
  relayRole: string;
  projectorRole: string;
}

/** The role names of `options`, defaults filled in. */
export function migrationRoles(options: Partial<MigrationRoles>): MigrationRoles {
  return {
    appRole: options.appRole ?? 'outbox_app',
    ownerRole: options.ownerRole ?? 'outbox_owner',
    relayRole: options.relayRole ?? 'outbox_relay',
    projectorRole: options.projectorRole ?? 'outbox_projector',
  };
}

export function renderMigration(sql: string, options: { schema: string; projectorSchema: string; relayShards?: number } & MigrationRoles): string {
  const shards = options.relayShards ?? DEFAULT_RELAY_SHARDS;
  if (!Number.isInteger(shards) || shards < 1 || shards > 1024) {
    throw new OutboxError('CONFIG_INVALID', `the relay shard count must be an integer from 1 to 1024, got ${shards}`, { details: { field: 'relayShards', value: shards } });
  }
  // Replacement functions, not strings: a `$` in a replacement string would be a pattern.
  return sql
    .replace(/:relay_shards\b/g, () => String(shards))
    .replace(/:schema\b/g, () => ident(options.schema))
    .replace(/:projector_schema\b/g, () => ident(options.projectorSchema))
    .replace(/:app_role\b/g, () => ident(options.appRole))
    .replace(/:owner_role\b/g, () => ident(options.ownerRole))
    .replace(/:relay_role\b/g, () => ident(options.relayRole))
    .replace(/:projector_role\b/g, () => ident(options.projectorRole));
}

/**
 * Refuse a schema in which PUBLIC or one of the least-privilege roles may create objects. The outbox's
 * trigger functions run as their owner; they resolve names only in pg_catalog and this schema (see
 * 0002_pin_search_path.sql), so whoever may create objects in this schema could shadow them.
 */
async function assertSchemaSafe(client: pg.ClientBase, schema: string, roles: string[]): Promise<void> {
  const { rows } = await client.query<{ public_create: boolean; creators: string[] }>(
    `SELECT EXISTS (SELECT 1 FROM pg_catalog.aclexplode(coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
                     WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') AS public_create,
            ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r
                   WHERE r.rolname = ANY ($2::text[]) AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
                   ORDER BY 1) AS creators
       FROM pg_catalog.pg_namespace n WHERE n.nspname = $1`,
    [schema, roles],
  );
  const row = rows[0];
  if (!row) return; // not there yet: migrate creates it, owned by the migrating user, with no grants
  const who = [...(row.public_create ? ['PUBLIC'] : []), ...row.creators.map((r) => `role ${ident(r)}`)];
  if (who.length === 0) return;
  const revoke = [...(row.public_create ? ['PUBLIC'] : []), ...row.creators.map(ident)].join(', ');
  throw new OutboxError(
    'MIGRATION_FAILED',
    `refusing to migrate schema ${ident(schema)}: ${who.join(' and ')} may create objects in it, and the outbox's trigger functions ` +
      `run as their owner, so such objects could be used to act as the owner; run REVOKE CREATE ON SCHEMA ${ident(schema)} FROM ${revoke} ` +
      `(for a role, also revoke it from the roles it inherits from) or choose another OUTBOX_SCHEMA`,
    { details: { schema, mayCreate: who } },
  );
}

/**
 * Create each role that does not exist yet (NOLOGIN). Roles are cluster-global, so migrations of other
 * databases may create one at the same moment: that is fine. A role that exists is used as it is, so a
 * migrating user without CREATEROLE works with roles created beforehand.
 */
async function ensureRoles(client: pg.ClientBase, roles: string[], logger: Logger): Promise<void> {
  for (const role of roles) {
    const { rows } = await client.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [role]);
    if (rows.length > 0) continue;
    try {
      await client.query(`CREATE ROLE ${ident(role)} NOLOGIN`);
      logger.info({ role }, 'role created');
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '42710' || code === '23505') continue; // created concurrently by another migration
      if (code === '42501') {
        throw new OutboxError(
          'MIGRATION_FAILED',
          `role ${ident(role)} does not exist and the migrating user may not create roles: create it first (CREATE ROLE ${ident(role)} NOLOGIN) or migrate as a user with CREATEROLE`,
          { cause: err, details: { role } },
        );
      }
      throw new OutboxError('MIGRATION_FAILED', `could not create role ${ident(role)}: ${(err as Error).message}`, { cause: err, details: { role } });
    }
  }
}

/**
 * The roles keep their rights apart: four distinct roles, an owner that is not a superuser, and no
 * process role that inherits the owner's rights (it could switch off the history's triggers).
 */
function assertRolesDistinct(roles: MigrationRoles): void {
  const names = [roles.ownerRole, roles.appRole, roles.relayRole, roles.projectorRole];
  if (new Set(names).size !== names.length) {
    throw new OutboxError('CONFIG_INVALID', `the owner, app, relay and projector roles must be four different roles, got ${names.map(ident).join(', ')}`, { details: { roles } });
  }
}

async function assertRolesSeparate(client: pg.ClientBase, roles: MigrationRoles): Promise<void> {
  const { rows } = await client.query<{ superuser: boolean; members: string[] }>(
    `SELECT o.rolsuper AS superuser,
            ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r
                   WHERE r.rolname = ANY ($2::text[]) AND pg_catalog.pg_has_role(r.oid, o.oid, 'MEMBER') ORDER BY 1) AS members
       FROM pg_catalog.pg_roles o WHERE o.rolname = $1`,
    [roles.ownerRole, [roles.appRole, roles.relayRole, roles.projectorRole]],
  );
  const row = rows[0];
  if (!row) return;
  if (row.superuser) {
    throw new OutboxError('MIGRATION_FAILED', `the owner role ${ident(roles.ownerRole)} is a superuser: the trigger functions run as it, so it must be an ordinary NOLOGIN role`, {
      details: { role: roles.ownerRole },
    });
  }
  if (row.members.length > 0) {
    throw new OutboxError(
      'MIGRATION_FAILED',
      `${row.members.map((m) => `role ${ident(m)}`).join(' and ')} ${row.members.length > 1 ? 'are members' : 'is a member'} of the owner role ${ident(roles.ownerRole)} and would own the history: revoke the membership`,
      { details: { role: roles.ownerRole, members: row.members } },
    );
  }
}

/**
 * The migrating user must be able to act as the owner role (to hand it the objects and, later, to
 * replace its functions). A superuser can; a user with CREATEROLE grants itself the membership.
 */
async function ensureOwnerMembership(client: pg.ClientBase, ownerRole: string): Promise<void> {
  const { rows } = await client.query<{ member: boolean; me: string }>(`SELECT pg_catalog.pg_has_role(current_user, $1, 'MEMBER') AS member, current_user AS me`, [ownerRole]);
  if (rows[0]!.member) return;
  try {
    await client.query(`GRANT ${ident(ownerRole)} TO CURRENT_USER`);
  } catch (err) {
    throw new OutboxError(
      'MIGRATION_FAILED',
      `the migrating user ${ident(rows[0]!.me)} must be a member of the owner role ${ident(ownerRole)}: run GRANT ${ident(ownerRole)} TO ${ident(rows[0]!.me)} as a user with CREATEROLE`,
      { cause: err, details: { role: ownerRole } },
    );
  }
}

/** Apply pending migrations. Returns the names applied by this call. */
export async function migrate(client: pg.ClientBase, options: MigrateOptions): Promise<string[]> {
  const schema = ident(options.schema);
  const projectorSchema = options.projectorSchema ?? defaultProjectorSchema(options.schema);
  const roles = migrationRoles(options);
  checkIdentifier('schema', options.schema);
  checkIdentifier('projector schema', projectorSchema);
  checkIdentifier('app role', roles.appRole);
  checkIdentifier('owner role', roles.ownerRole);
  checkIdentifier('relay role', roles.relayRole);
  checkIdentifier('projector role', roles.projectorRole);
  assertRolesDistinct(roles);
  const applied: string[] = [];
  const lockKey = `kafka-outbox:migrate:${options.schema}`;
  await assertSchemaSafe(client, options.schema, [roles.appRole, roles.relayRole, roles.projectorRole]);
  await ensureRoles(client, [roles.ownerRole, roles.appRole, roles.relayRole, roles.projectorRole], options.logger);
  await assertRolesSeparate(client, roles);
  await ensureOwnerMembership(client, roles.ownerRole);
  for (const m of loadMigrations().filter((x) => options.untilVersion === undefined || x.version <= options.untilVersion)) {
    try {
      // One transaction per migration, on this one session (the lock is the transaction's).
      const appliedNow = await withTransaction(client, async () => {
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockKey]);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
        await client.query(`CREATE SCHEMA IF NOT EXISTS ${ident(projectorSchema)}`);
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${schema}.outbox_migrations (
           version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
        );
        const { rows } = await client.query<{ name: string; checksum: string }>(`SELECT name, checksum FROM ${schema}.outbox_migrations WHERE version = $1`, [m.version]);
        if (rows[0]) {
          if (rows[0].name !== m.name) {
            throw new OutboxError(
              'MIGRATION_FAILED',
              `version ${m.version} of schema ${ident(options.schema)} was applied as ${rows[0].name}, but the file with that number is now ${m.name}: migration files must never be renumbered or reused`,
              { details: { applied: rows[0].name, file: m.name } },
            );
          }
          if (rows[0].checksum !== m.checksum && !(EQUIVALENT_CHECKSUMS[m.name] ?? []).includes(rows[0].checksum)) {
            options.logger.warn({ migration: m.name }, 'applied migration differs from the file on disk (left as applied)');
          }
          return false;
        }
        // pg_catalog first and nothing else that others may create objects in (the migrating user may be a superuser).
        await client.query(`SET LOCAL search_path TO pg_catalog, ${schema}`);
        await client.query(
          renderMigration(m.sql, { schema: options.schema, projectorSchema, ...roles, ...(options.relayShards !== undefined ? { relayShards: options.relayShards } : {}) }),
        );
        await client.query(`INSERT INTO ${schema}.outbox_migrations (version, name, checksum) VALUES ($1, $2, $3)`, [m.version, m.name, m.checksum]);
        return true;
      });
      if (!appliedNow) continue;
      applied.push(m.name);
      options.logger.info({ migration: m.name, schema: options.schema }, 'migration applied');
    } catch (err) {
      throw new OutboxError('MIGRATION_FAILED', `migration ${m.name} failed: ${(err as Error).message}`, { cause: err, details: { migration: m.name } });
    }
  }
  return applied;
}
