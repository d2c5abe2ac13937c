import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { defineConfig, defineProjection, defineReducer } from '../../index';
import { isOutboxError } from '../../core/errors';
import { useTestDatabase } from '../support/isolation';
import { childEnv, emptyEnvFile, REPO, runOutbox } from '../cli/run-outbox';

// The config module: outbox.config.{js,mjs,cjs,ts} in the working directory, or --config / OUTBOX_CONFIG;
// every command reads the same domain from it; --schemas and OUTBOX_SCHEMAS_DIR win over its schemasDir;
// its errors name the file and the field.
const db = useTestDatabase({ poolSize: 1 });
const root = mkdtempSync(path.join(os.tmpdir(), 'outbox-config-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const INDEX = JSON.stringify(path.join(REPO, 'index.ts'));
const PAYLOAD = JSON.stringify({ type: 'record', fields: [{ name: 'amount_cents', type: 'long' }] });

function project(name: string, files: Record<string, string>): string {
  const dir = path.join(root, name);
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
  return dir;
}

const env = (vars: Record<string, string> = {}): NodeJS.ProcessEnv =>
  childEnv({
    OUTBOX_ENV_FILE: emptyEnvFile(),
    DATABASE_URL: db.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
    SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
    ...vars,
  });

interface StatusCatalog {
  ok: boolean;
  configFile?: string;
  dir?: string;
  source?: string;
  aggregateTypes?: string[];
  projections?: string[];
  error?: string;
}

async function catalogOf(args: string[], vars: Record<string, string>, cwd: string): Promise<StatusCatalog> {
  const r = await runOutbox(['status', '--json', ...args], env(vars), 30_000, cwd);
  expect([r.code, r.lines]).toEqual([0, []]);
  return (JSON.parse(r.stdout) as { catalog: StatusCatalog }).catalog;
}

test('outbox.config.js in the working directory, --config (.mjs), OUTBOX_CONFIG (.ts) and --schemas all feed the same domain', async () => {
  const cjs = project('cjs', {
    'outbox.config.js': `const { defineConfig, defineProjection } = require(${INDEX});
module.exports = defineConfig({
  schemasDir: './events',
  topics: { invoice: 'billing.invoices' },
  projections: [defineProjection({
    name: 'invoices', aggregateTypes: ['invoice'],
    tables: { invoices: 'CREATE TABLE invoices (invoice_id text PRIMARY KEY, amount_cents bigint NOT NULL)' },
    handlers: { InvoiceIssued: async () => undefined },
  })],
});`,
    'events/invoice/InvoiceIssued.v1.avsc': PAYLOAD,
  });
  const esm = project('esm', {
    'custom.mjs': `export default { schemasDir: 'schemas', auditLog: true };`,
    'schemas/order/OrderPlaced.v1.avsc': PAYLOAD,
  });
  const ts = project('ts', {
    'outbox.config.ts': `import { defineConfig, defineReducer } from ${INDEX};
interface Totals { paid: number }
export default defineConfig({
  schemasDir: 'avro',
  reducers: [defineReducer<Totals>({ aggregateType: 'payment', version: 1, initial: { paid: 0 }, evolve: (s, e) => ({ paid: s.paid + Number((e.payload as { amount_cents: number }).amount_cents) }) })],
});`,
    'avro/payment/PaymentReceived.v1.avsc': PAYLOAD,
  });
  const other = project('other', { 'shipment/ShipmentSent.v1.avsc': PAYLOAD });

  // One after another: four CLI processes at once (each probing Kafka and the registry) pushed the
  // registry probe past its 5 s timeout on a loaded machine.
  const found = await catalogOf([], {}, cjs);
  const flag = await catalogOf(['--config', path.join(esm, 'custom.mjs')], {}, cjs);
  const variable = await catalogOf([], { OUTBOX_CONFIG: path.join(ts, 'outbox.config.ts') }, root);
  const schemasWins = await catalogOf(['--schemas', other], {}, cjs);
  expect(found).toMatchObject({
    ok: true,
    configFile: path.join(cjs, 'outbox.config.js'),
    dir: path.join(cjs, 'events'),
    aggregateTypes: ['invoice'],
    projections: ['audit_log', 'invoices'],
  });
  expect(flag).toMatchObject({ ok: true, configFile: path.join(esm, 'custom.mjs'), dir: path.join(esm, 'schemas'), aggregateTypes: ['order'], projections: ['audit_log'] });
  expect(variable).toMatchObject({ ok: true, configFile: path.join(ts, 'outbox.config.ts'), dir: path.join(ts, 'avro'), aggregateTypes: ['payment'] });
  expect(schemasWins).toMatchObject({
    ok: true,
    configFile: path.join(cjs, 'outbox.config.js'),
    dir: other,
    source: '--schemas',
    aggregateTypes: ['shipment'],
    projections: ['audit_log', 'invoices'],
  });
}, 120_000);

test('config module errors name the file and the field', async () => {
  const typo = project('typo', { 'outbox.config.js': `module.exports = { schemaDir: './events' };` });
  const badProjection = project('bad-projection', {
    'outbox.config.js': `const { defineConfig, defineProjection } = require(${INDEX});
module.exports = defineConfig({ schemasDir: '.', projections: [defineProjection({ name: 'Invoices', aggregateTypes: ['invoice'], tables: { invoices: 'CREATE TABLE invoices (id text)' }, handlers: {} })] });`,
  });
  const badTopic = project('bad-topic', { 'outbox.config.cjs': `module.exports = { schemasDir: '.', topics: { invoice: 'no spaces allowed' } };` });
  const two = project('two', { 'outbox.config.js': 'module.exports = {};', 'outbox.config.ts': 'export default {};' });
  const throws = project('throws', { 'outbox.config.js': `throw new Error('boom at load');` });
  const missing = path.join(root, 'nowhere', 'outbox.config.js');
  const run = (cwd: string, args: string[] = []) => runOutbox(['schemas', 'check', ...args], env(), 30_000, cwd);
  const results = await Promise.all([run(typo), run(badProjection), run(badTopic), run(two), run(throws), run(root, ['--config', missing])]);
  expect(results.map((r) => r.code)).toEqual([1, 1, 1, 1, 1, 1]);
  expect(results.map((r) => r.lines)).toEqual([
    [
      `outbox: config module ${path.join(typo, 'outbox.config.js')}: schemaDir is not a config field (fields: schemasDir, upcasters, projections, reducers, topics, auditLog, commands)`,
    ],
    [`outbox: config module ${path.join(badProjection, 'outbox.config.js')}: projection Invoices: name must match [a-z][a-z0-9_]{0,39}, got "Invoices"`],
    [`outbox: config module ${path.join(badTopic, 'outbox.config.cjs')}: topics.invoice must be a Kafka topic name, got "no spaces allowed"`],
    [`outbox: more than one config module in ${two}: outbox.config.js, outbox.config.ts (keep one, or pick one with --config)`],
    [`outbox: config module ${path.join(throws, 'outbox.config.js')}: boom at load`],
    [`outbox: config module ${missing} does not exist (--config / OUTBOX_CONFIG)`],
  ]);
}, 120_000);

test('defineConfig, defineProjection and defineReducer check their fields where they are called', () => {
  const message = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      expect(isOutboxError(err, 'CONFIG_INVALID')).toBe(true);
      return (err as Error).message;
    }
    return 'no error';
  };
  const ok = { name: 'invoices', aggregateTypes: ['invoice'], tables: { invoices: 'CREATE TABLE invoices (id text)' }, handlers: {} };
  expect(message(() => defineProjection({ ...ok, aggregateTypes: [] }))).toBe('projection invoices: aggregateTypes must list the aggregate types (or topics) the projection reads');
  expect(message(() => defineProjection({ ...ok, tables: {} }))).toBe('projection invoices: tables must name at least one owned table: { name: DDL }');
  expect(message(() => defineProjection({ ...ok, handlers: { InvoiceIssued: 'nope' as never } }))).toBe('projection invoices: handlers.InvoiceIssued must be a function');
  expect(message(() => defineProjection({ ...ok, unhandledEventTypes: 'drop' as never }))).toBe(
    `projection invoices: unhandledEventTypes must be 'dead-letter' or 'skip', got "drop"`,
  );
  expect(message(() => defineReducer({ aggregateType: 'invoice', version: 0, initial: null, evolve: (s) => s }))).toBe(
    'reducer invoice: version must be a whole number >= 1, got 0',
  );
  expect(message(() => defineConfig({ projections: [defineProjection(ok), defineProjection(ok)] }))).toBe('projections[1] name "invoices" is used twice (audit_log is built in)');
  expect(message(() => defineConfig({ upcasters: { InvoiceIssued: { 0: (p) => p } } }))).toBe('upcasters.InvoiceIssued.0 must be keyed by the version it upcasts from (1, 2, ...)');
  // A value as initial state is copied per aggregate.
  const r = defineReducer({ aggregateType: 'invoice', version: 1, initial: { lines: [] as string[] }, evolve: (s, e) => (s.lines.push(e.eventType), s) });
  const a = r.apply(r.initial('a'), { eventType: 'X' } as never);
  expect(r.initial('b')).toEqual({ lines: [] });
  expect(a).toEqual({ lines: ['X'] });
});
