import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/logger';
import { registryRequest } from '../../core/registry';
import { defaultSchemasDir, loadCatalog } from '../../schemas/catalog';
import { checkSchemas, formatCheckReport } from '../../schemas/check-compatibility';
import { registerSchemas } from '../../schemas/register-schemas';
import { uniqueName } from '../support/isolation';

// `outbox schemas check` against the real registry. Modified schemas live in a temp copy of schemas/
// and are registered under a namespace of their own, so the project's real subjects are never touched.
const config = loadConfig(process.env, { registry: true });
const logger = silentLogger();
const dirs: string[] = [];

function tempSchemas(files: Record<string, object> = {}): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'schemas-check-'));
  dirs.push(dir);
  cpSync(path.join(defaultSchemasDir(), 'user'), path.join(dir, 'user'), { recursive: true });
  for (const [name, schema] of Object.entries(files)) writeFileSync(path.join(dir, 'user', name), JSON.stringify(schema, null, 2));
  return dir;
}

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const v2 = (fields: object[]): object => ({ type: 'record', name: 'UserEmailChangedPayload', fields });

test("the project's own schemas pass the check (this is the check that runs in npm test)", async () => {
  const report = await checkSchemas({ registry: config.registry, catalog: loadCatalog() });
  if (!report.ok) throw new Error(formatCheckReport(report));
  expect(report.problems).toEqual([]);
  expect(report.subjects.map((s) => s.subject).sort()).toEqual([
    'outbox.user.UserDeactivated',
    'outbox.user.UserEmailChanged',
    'outbox.user.UserRegistered',
    'outbox.user.UserRenamed',
  ]);
});

test('after registering, the check finds every version registered under its configured level', async () => {
  const catalog = loadCatalog(undefined, { namespace: uniqueName('ns') });
  const reg = await registerSchemas({ registry: config.registry, catalog, logger, compatibility: { subjects: { UserDeactivated: 'FULL' } } });
  expect(reg.ok).toBe(true);
  const report = await checkSchemas({ registry: config.registry, catalog, compatibility: { subjects: { UserDeactivated: 'FULL' } } });
  expect(report).toMatchObject({ ok: true, problems: [], warnings: [] });
  const renamed = report.subjects.find((s) => s.eventType === 'UserRenamed')!;
  expect(renamed).toMatchObject({ compatibility: 'BACKWARD', registryCompatibility: 'BACKWARD', pending: [] });
  expect(renamed.registered.map((r) => r.version)).toEqual([1, 2]);
  expect(report.subjects.find((s) => s.eventType === 'UserDeactivated')).toMatchObject({ compatibility: 'FULL', registryCompatibility: 'FULL' });
  // The per-subject level really is set in the registry.
  const cfg = await registryRequest(config.registry, { method: 'GET', path: `/config/${catalog.latest('UserDeactivated')!.subject}` });
  expect(cfg.body).toMatchObject({ compatibilityLevel: 'FULL' });
});

test('a type change is rejected before anything is published, naming the field', async () => {
  const namespace = uniqueName('ns');
  await registerSchemas({ registry: config.registry, catalog: loadCatalog(undefined, { namespace }), logger });
  const dir = tempSchemas({
    'UserEmailChanged.v3.avsc': v2([
      { name: 'new_email', type: 'int' },
      { name: 'verified', type: 'boolean', default: false },
    ]),
  });
  const catalog = loadCatalog(dir, { namespace });
  const report = await checkSchemas({ registry: config.registry, catalog });
  expect(report.ok).toBe(false);
  const local = report.problems.find((p) => p.source === 'local')!;
  expect(local).toMatchObject({ subject: `${namespace}.user.UserEmailChanged`, version: 3, field: 'payload.new_email' });
  expect(local.message).toBe('payload.new_email: type changed from string (v2) to int (v3)');
  // The registry's own verdict agrees.
  expect(report.problems.find((p) => p.source === 'registry')).toMatchObject({ version: 3, field: 'payload.new_email' });
  expect(formatCheckReport(report)).toContain(
    `INCOMPATIBLE ${namespace}.user.UserEmailChanged v3 field payload.new_email: payload.new_email: type changed from string (v2) to int (v3)`,
  );

  // `outbox schemas register` is refused by the registry too, and says why.
  const reg = await registerSchemas({ registry: config.registry, catalog, logger });
  expect(reg.ok).toBe(false);
  expect(reg.rejected).toMatchObject({ subject: `${namespace}.user.UserEmailChanged`, version: 3 });
  expect(reg.rejected!.problems.map((p) => p.field)).toEqual(['payload.new_email']);
  expect(reg.rejected!.message).toMatch(/409/);
});

test('a field added without a default is rejected under BACKWARD, naming the field', async () => {
  const namespace = uniqueName('ns');
  const dir = tempSchemas({
    'UserEmailChanged.v3.avsc': v2([
      { name: 'new_email', type: 'string' },
      { name: 'verified', type: 'boolean', default: false },
      { name: 'source', type: 'string' },
    ]),
  });
  const report = await checkSchemas({ registry: config.registry, catalog: loadCatalog(dir, { namespace }) });
  expect(report.ok).toBe(false);
  expect(report.problems).toEqual([
    {
      subject: `${namespace}.user.UserEmailChanged`,
      version: 3,
      field: 'payload.source',
      message: 'payload.source: added in v3 without a default, so events written with v2 (which have no source) cannot be read',
      source: 'local',
    },
  ]);
});

test('a field removed without a default: allowed by BACKWARD, rejected by FULL (per-subject override), naming the field', async () => {
  const namespace = uniqueName('ns');
  const reg = await registerSchemas({ registry: config.registry, catalog: loadCatalog(undefined, { namespace }), logger, compatibility: { subjects: { UserRegistered: 'FULL' } } });
  expect(reg.ok).toBe(true);
  // v2 drops `name`, which has no default in v1.
  const dir = tempSchemas({ 'UserRegistered.v2.avsc': { type: 'record', name: 'UserRegisteredPayload', fields: [{ name: 'email', type: 'string' }] } });
  const catalog = loadCatalog(dir, { namespace });

  const backward = await checkSchemas({ registry: config.registry, catalog, compatibility: { default: 'BACKWARD', subjects: {} } });
  expect(backward.problems.filter((p) => p.source === 'local')).toEqual([]);
  // ...but the registry enforces the FULL the subject was registered with, so it still says no, and the
  // check warns that the configured level differs from the registry's.
  expect(backward.warnings.join('\n')).toMatch(/UserRegistered: the registry enforces FULL, configured is BACKWARD/);
  expect(backward.problems).toEqual([expect.objectContaining({ source: 'registry', version: 2 })]);

  const full = await checkSchemas({ registry: config.registry, catalog, compatibility: { subjects: { [catalog.latest('UserRegistered')!.subject]: 'FULL' } } });
  expect(full.ok).toBe(false);
  expect(full.problems).toEqual([
    {
      subject: `${namespace}.user.UserRegistered`,
      version: 2,
      field: 'payload.name',
      message: 'payload.name: removed in v2, but v1 readers require it (it has no default in v1)',
      source: 'local',
    },
    expect.objectContaining({ source: 'registry', version: 2, field: 'payload.name' }),
  ]);
});

test("the project's evolutions are BACKWARD-only: under FULL the check names the renamed and the split field", async () => {
  const report = await checkSchemas({ registry: config.registry, catalog: loadCatalog(undefined, { namespace: uniqueName('ns') }), compatibility: { default: 'FULL' } });
  // A rename via alias is readable by new readers only (aliases are a reader-side feature); so is the
  // UserRenamed split (old readers would miss `name`).
  expect(report.problems.map((p) => [p.subject.replace(/^.*\.user\./, ''), p.version, p.field, p.message])).toEqual([
    ['UserEmailChanged', 2, 'payload.email', 'payload.email: removed in v2, but v1 readers require it (it has no default in v1)'],
    ['UserRenamed', 2, 'payload.name', 'payload.name: removed in v2, but v1 readers require it (it has no default in v1)'],
  ]);
});

test('local-only check (nothing registered yet) still compares consecutive versions', async () => {
  const namespace = uniqueName('ns');
  const dir = tempSchemas({
    'UserRenamed.v3.avsc': {
      type: 'record',
      name: 'UserRenamedPayload',
      fields: [
        { name: 'first_name', type: { type: 'array', items: 'string' } },
        { name: 'last_name', type: 'string', default: '' },
      ],
    },
  });
  const report = await checkSchemas({ registry: config.registry, catalog: loadCatalog(dir, { namespace }) });
  expect(report.subjects.every((s) => s.registered.length === 0)).toBe(true);
  expect(report.problems).toEqual([
    expect.objectContaining({ version: 3, field: 'payload.first_name', message: 'payload.first_name: type changed from string (v2) to array of string (v3)' }),
  ]);
});
