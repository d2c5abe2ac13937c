import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isOutboxError } from '../../core/errors';
import { silentLogger } from '../../core/logger';
import { loadMigrations, migrate } from '../../infra/migrate';
import { useScratch } from './scratch';

// Each migration version is recorded once per schema, so two files with one number, or a number reused
// for another file, would leave a migration silently unapplied: both are refused instead.
const logger = silentLogger();
const scratch = useScratch();

test('two migration files with the same version are refused, naming both', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-migrations-'));
  writeFileSync(path.join(dir, '0101_first.sql'), 'SELECT 1;');
  writeFileSync(path.join(dir, '0101_second.sql'), 'SELECT 2;');
  let err: unknown;
  try {
    loadMigrations(dir);
  } catch (e) {
    err = e;
  }
  expect(isOutboxError(err, 'MIGRATION_FAILED')).toBe(true);
  expect((err as Error).message).toBe('migrations 0101_first and 0101_second share version 0101: give one of them the next free number');
});

test("the repository's migration files have distinct versions", () => {
  const versions = loadMigrations().map((m) => m.version);
  expect(new Set(versions).size).toBe(versions.length);
});

test('a version recorded under another name is refused instead of being taken as applied', async () => {
  const url = await scratch.database();
  const c = await scratch.connect(url);
  await migrate(c, { schema: 'outbox', appRole: scratch.role('ko_app'), logger });
  await c.query(`UPDATE outbox.outbox_migrations SET name = '0101_something_else' WHERE version = 101`);
  const err = await migrate(c, { schema: 'outbox', logger }).catch((e: unknown) => e);
  expect(isOutboxError(err, 'MIGRATION_FAILED')).toBe(true);
  expect((err as Error).message).toContain('version 101 of schema "outbox" was applied as 0101_something_else, but the file with that number is now 0101_projector_privileges');
});
