import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { npmInstall, packLibrary, run } from '../support/pack';
import { killHard, spawnProcess, stopGracefully, type Child } from '../support/processes';
import { createRegistry } from '../support/registry-client';
import { REPO_ROOT } from '../support/stack';

// examples/orders-service as a team would run it: the library packed (npm pack) and installed from the
// tarball into a project holding only the example's files; the example's HTTP server, and `outbox relay`
// and `outbox project` from the INSTALLED bin with the example's config module, against a database, a
// topic and consumer groups of this run. HTTP requests (a 412, a 406, validation errors) make the
// history; then the topic decodes with a standard Confluent client, both read models equal a fold of the
// history computed here, audit history shows who asked from which request, and rebuilds give the same rows.

const db = useTestDatabase({ poolSize: 3 });
const EXAMPLE = path.join(REPO_ROOT, 'examples', 'orders-service');

let work = '';
let app = '';
let env: NodeJS.ProcessEnv = {};
let topic = '';
let baseUrl = '';
const children: Child[] = [];

/** The installed `outbox` bin, run to completion in the example project. */
function outbox(args: string[], timeoutMs = 120_000) {
  return run(path.join(app, 'node_modules', '.bin', 'outbox'), args, { cwd: app, env, timeoutMs });
}

function start(label: string, file: string, args: string[]): Child {
  const child = spawnProcess({ label, file, args, cwd: app, env });
  children.push(child);
  return child;
}

async function waitUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'outbox-orders-'));
  const { tarball } = await packLibrary(work);
  // The example's own files, nothing else of the checkout; kafka-outbox comes from the tarball.
  app = path.join(work, 'orders-service');
  cpSync(EXAMPLE, app, { recursive: true, filter: (src) => path.basename(src) !== 'node_modules' });
  // Its runtime dependencies only, as a deployment installs them: the type check below borrows the
  // checkout's TypeScript and @types (the local npm cache need not hold the devDependencies).
  const manifest = JSON.parse(readFileSync(path.join(app, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies?: Record<string, string> };
  manifest.dependencies['kafka-outbox'] = `file:${tarball}`;
  delete manifest.devDependencies;
  writeFileSync(path.join(app, 'package.json'), JSON.stringify(manifest, null, 2));
  await npmInstall(app);

  topic = uniqueName('orders');
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    OUTBOX_ENV_FILE: '/dev/null',
    DATABASE_URL: db.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS,
    SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL,
    OUTBOX_CONFIG: path.join(app, 'outbox.config.js'),
    // This run's topic (instead of order.events) and consumer groups.
    OUTBOX_TOPIC_MAP: `order=${topic}`,
    KAFKA_CLIENT_ID: topic,
    OUTBOX_TOPIC_PARTITIONS: '3',
    OUTBOX_RELAY_POLL_INTERVAL: '200ms',
    OUTBOX_SNAPSHOT_EVERY: '3',
    LOG_LEVEL: 'warn',
    PORT: '0',
  };
}, 300_000);

afterAll(async () => {
  // Children still running after a failure: SIGTERM, then SIGKILL if one does not stop.
  await Promise.all(
    children.map(async (c) => {
      const timer = setTimeout(() => void killHard(c), 20_000);
      await stopGracefully(c);
      clearTimeout(timer);
    }),
  );
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

test('the example is a project of its own: it imports kafka-outbox by its package name only, and the installed bin migrates', async () => {
  const files: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      if (name === 'node_modules') continue;
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.js')) files.push(full);
    }
  };
  walk(app);
  expect(files.length).toBeGreaterThan(5);
  const imports = new Set<string>();
  for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(/^\s*import\s[^'"]*['"]([^'"]+)['"]/gm)) imports.add(m[1]!);
  const external = [...imports].filter((s) => !s.startsWith('./') && !s.startsWith('../') && !s.startsWith('node:')).sort();
  expect(external).toEqual(['kafka-outbox', 'kafka-outbox/projector', 'pg']);
  // Relative imports stay inside the example.
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(/^\s*import\s[^'"]*['"](\.{1,2}\/[^'"]+)['"]/gm)) {
      expect(path.resolve(path.dirname(f), m[1]!).startsWith(app + path.sep)).toBe(true);
    }
  }
  // The JSDoc types check (`npm run typecheck`) against the installed package's declarations, with the
  // checkout's TypeScript and @types packages.
  const types = path.join(REPO_ROOT, 'node_modules', '@types');
  writeFileSync(
    path.join(app, 'tsconfig.check.json'),
    JSON.stringify({ extends: './tsconfig.json', compilerOptions: { typeRoots: [types], paths: { pg: [path.join(types, 'pg', 'index.d.ts')] } } }),
  );
  const typecheck = run(process.execPath, [path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.check.json'], { cwd: app, timeoutMs: 120_000 });
  const installed = JSON.parse(readFileSync(path.join(app, 'node_modules', 'kafka-outbox', 'package.json'), 'utf8')) as { version: string };
  expect(installed.version).toBe(JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version);
  await outbox(['migrate']);
  await typecheck;
  expect(existsSync(path.join(app, 'node_modules', 'typescript'))).toBe(false);
}, 150_000);

// ---- the HTTP conversation --------------------------------------------------------------------------

interface Answer {
  status: number;
  etag: string | null;
  headers: Headers;
  body: unknown;
  text: string;
}

async function call(
  method: string,
  url: string,
  options: { actor?: string; requestId?: string; ifMatch?: string; accept?: string; body?: unknown; ifNoneMatch?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (options.actor) headers['X-Actor'] = options.actor;
  if (options.requestId) headers['X-Request-Id'] = options.requestId;
  if (options.ifMatch) headers['If-Match'] = options.ifMatch;
  if (options.ifNoneMatch) headers['If-None-Match'] = options.ifNoneMatch;
  if (options.accept) headers.Accept = options.accept;
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${baseUrl}${url}`, { method, headers, ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}) });
  const text = await res.text();
  const json = (res.headers.get('content-type') ?? '').startsWith('application/json') ? (JSON.parse(text) as unknown) : undefined;
  return { status: res.status, etag: res.headers.get('etag'), headers: res.headers, body: json, text };
}

/** What each successful write request was: its actor and request id, per order, in order. */
const written = new Map<string, Array<{ actor: string; requestId: string }>>();
function wrote(order: string, actor: string, requestId: string): void {
  written.set(order, [...(written.get(order) ?? []), { actor, requestId }]);
}

const LEGACY = 'legacy-1';

test('HTTP: ETags, If-Match as the expected version (412), content negotiation (406), validation (400), business rules (409)', async () => {
  // An order written before the price change (OrderLinesSet v1, prices as decimal strings), by the plain
  // SQL contract as an older release of the service would have written it.
  for (const [type, payload] of [
    ['OrderPlaced', { customer_id: 'c-1', currency: 'EUR' }],
    [
      'OrderLinesSet',
      {
        lines: [
          { sku: 'tea', quantity: 3, price: '4.5' },
          { sku: 'pot', quantity: 1, price: '19.99' },
        ],
      },
    ],
  ] as const) {
    await db.pool.query(
      `INSERT INTO outbox.outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
       VALUES ('order', $1, $2, 1, $3::jsonb, 'import:2019', '0af7651916cd43dd8448eb211c80319c', 'legacy-import')`,
      [LEGACY, type, JSON.stringify(payload)],
    );
    wrote(LEGACY, 'import:2019', 'legacy-import');
  }

  const server = start('orders-service', process.execPath, ['server.js']);
  start('outbox relay', path.join(app, 'node_modules', '.bin', 'outbox'), ['relay']);
  start('outbox project', path.join(app, 'node_modules', '.bin', 'outbox'), ['project']);
  await server.waitFor(/orders-service listening on http:\/\/127\.0\.0\.1:\d+/, 60_000);
  baseUrl = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(server.output())![1]!;

  // Create: 201, ETag "1", Location; the request id is echoed.
  const placed = await call('POST', '/orders', { actor: 'user:alice', requestId: 'req-1', body: { order_id: 'o-1', customer_id: 'c-1', currency: 'EUR' } });
  expect([placed.status, placed.etag, placed.headers.get('location'), placed.headers.get('x-request-id')]).toEqual([201, '"1"', '/orders/o-1', 'req-1']);
  expect(placed.body).toMatchObject({ order_id: 'o-1', customer_id: 'c-1', currency: 'EUR', status: 'open', lines: [], total_cents: 0, version: 1 });
  wrote('o-1', 'user:alice', 'req-1');
  const again = await call('POST', '/orders', { actor: 'user:alice', requestId: 'req-1b', body: { order_id: 'o-1', customer_id: 'c-9', currency: 'EUR' } });
  expect([again.status, again.etag]).toEqual([409, '"1"']);

  const lines = [
    { sku: 'tea', quantity: 2, unit_price_cents: 450 },
    { sku: 'cup', quantity: 1, unit_price_cents: 1200 },
  ];
  const set = await call('PUT', '/orders/o-1/lines', { actor: 'user:alice', requestId: 'req-2', ifMatch: '"1"', body: { lines } });
  expect([set.status, set.etag]).toEqual([200, '"2"']);
  expect(set.body).toMatchObject({ lines, total_cents: 2100, version: 2 });
  wrote('o-1', 'user:alice', 'req-2');

  // A stale If-Match: 412 with the current ETag, nothing written.
  const stale = await call('PUT', '/orders/o-1/lines', { actor: 'user:bob', requestId: 'req-3', ifMatch: '"1"', body: { lines: [] } });
  expect([stale.status, stale.etag]).toEqual([412, '"2"']);

  // Two writers with the same If-Match at once: one wins, the other gets 412 with the winner's version.
  const [a, b] = await Promise.all([
    call('PUT', '/orders/o-1/lines', { actor: 'user:bob', requestId: 'req-4a', ifMatch: '"2"', body: { lines: [{ sku: 'tea', quantity: 4, unit_price_cents: 450 }] } }),
    call('PUT', '/orders/o-1/lines', { actor: 'user:carol', requestId: 'req-4b', ifMatch: '"2"', body: { lines: [{ sku: 'mug', quantity: 2, unit_price_cents: 800 }] } }),
  ]);
  expect([a.status, b.status].sort()).toEqual([200, 412]);
  const [winner, loser] = a.status === 200 ? [a, b] : [b, a];
  expect([winner.etag, loser.etag]).toEqual(['"3"', '"3"']);
  wrote('o-1', winner === a ? 'user:bob' : 'user:carol', winner === a ? 'req-4a' : 'req-4b');

  // Validation: 400 naming the field.
  const badCustomer = await call('POST', '/orders', { actor: 'user:alice', requestId: 'req-5', body: { customer_id: '', currency: 'EUR' } });
  expect([badCustomer.status, badCustomer.body]).toEqual([400, { error: 'customer_id is required (a non-empty string)', field: 'customer_id' }]);
  const badCurrency = await call('POST', '/orders', { actor: 'user:alice', requestId: 'req-5b', body: { customer_id: 'c-1', currency: 'euro' } });
  expect([badCurrency.status, (badCurrency.body as { field: string }).field]).toEqual([400, 'currency']);
  const badQuantity = await call('PUT', '/orders/o-1/lines', {
    actor: 'user:alice',
    requestId: 'req-6',
    ifMatch: '"3"',
    body: { lines: [{ sku: 'tea', quantity: 0, unit_price_cents: 1 }] },
  });
  expect([badQuantity.status, badQuantity.etag, (badQuantity.body as { field: string }).field]).toEqual([400, '"3"', 'lines[0].quantity']);
  const noActor = await call('PUT', '/orders/o-1/lines', { requestId: 'req-7', ifMatch: '"3"', body: { lines: [] } });
  expect([noActor.status, (noActor.body as { field: string }).field]).toEqual([400, 'X-Actor']);
  const badIfMatch = await call('PUT', '/orders/o-1/lines', { actor: 'user:alice', ifMatch: 'W/"3"', body: { lines: [] } });
  expect([badIfMatch.status, (badIfMatch.body as { field: string }).field]).toEqual([400, 'If-Match']);
  const notJson = await fetch(`${baseUrl}/orders`, { method: 'POST', headers: { 'X-Actor': 'user:alice' }, body: '{"customer_id":' });
  expect([notJson.status, ((await notJson.json()) as { field: string }).field]).toEqual([400, 'body']);

  // The legacy order folds through the upcaster (3 x 4.50 + 19.99) and takes new lines.
  const legacy = await call('GET', `/orders/${LEGACY}`);
  expect([legacy.status, legacy.etag]).toEqual([200, '"2"']);
  expect(legacy.body).toMatchObject({
    customer_id: 'c-1',
    total_cents: 3349,
    lines: [
      { sku: 'tea', quantity: 3, unit_price_cents: 450 },
      { sku: 'pot', quantity: 1, unit_price_cents: 1999 },
    ],
  });
  const legacySet = await call('PUT', `/orders/${LEGACY}/lines`, {
    actor: 'user:dave',
    requestId: 'req-8',
    ifMatch: '"2"',
    body: { lines: [{ sku: 'pot', quantity: 2, unit_price_cents: 1999 }] },
  });
  expect([legacySet.status, legacySet.etag]).toEqual([200, '"3"']);
  wrote(LEGACY, 'user:dave', 'req-8');

  // A second customer, in another currency; cancelled, then the rules refuse further changes (409).
  const o2 = await call('POST', '/orders', { actor: 'user:erin', requestId: 'req-9', body: { order_id: 'o-2', customer_id: 'c-2', currency: 'USD' } });
  expect(o2.status).toBe(201);
  wrote('o-2', 'user:erin', 'req-9');
  expect(
    (await call('PUT', '/orders/o-2/lines', { actor: 'user:erin', requestId: 'req-10', ifMatch: '"1"', body: { lines: [{ sku: 'book', quantity: 1, unit_price_cents: 2500 }] } }))
      .status,
  ).toBe(200);
  wrote('o-2', 'user:erin', 'req-10');
  const cancelled = await call('POST', '/orders/o-2/cancel', { actor: 'support:frank', requestId: 'req-11', ifMatch: '"2"', body: { reason: 'customer changed their mind' } });
  expect([cancelled.status, cancelled.etag, (cancelled.body as { status: string }).status]).toEqual([200, '"3"', 'cancelled']);
  wrote('o-2', 'support:frank', 'req-11');
  const twice = await call('POST', '/orders/o-2/cancel', { actor: 'support:frank', requestId: 'req-12', body: { reason: 'again' } });
  expect([twice.status, twice.etag]).toEqual([409, '"3"']);
  const afterCancel = await call('PUT', '/orders/o-2/lines', { actor: 'user:erin', requestId: 'req-13', body: { lines: [] } });
  expect([afterCancel.status, afterCancel.etag]).toEqual([409, '"3"']);

  // Without a request id the service makes one, echoes it and records it.
  const o3 = await call('POST', '/orders', { actor: 'user:alice', body: { customer_id: 'c-1', currency: 'EUR' } });
  expect(o3.status).toBe(201);
  const o3Id = (o3.body as { order_id: string }).order_id;
  const generated = o3.headers.get('x-request-id')!;
  expect(generated).toMatch(/^[0-9a-f-]{36}$/);
  wrote(o3Id, 'user:alice', generated);
  expect(
    (
      await call('PUT', `/orders/${o3Id}/lines`, {
        actor: 'user:alice',
        requestId: 'req-14',
        ifMatch: '"1"',
        body: { lines: [{ sku: 'jam', quantity: 5, unit_price_cents: 399 }] },
      })
    ).status,
  ).toBe(200);
  wrote(o3Id, 'user:alice', 'req-14');

  // o-1 past two snapshot boundaries (every 3 events): versions 4, 5, 6, 7.
  for (let i = 0; i < 4; i++) {
    const r = await call('PUT', '/orders/o-1/lines', {
      actor: 'user:alice',
      requestId: `req-15.${i}`,
      ifMatch: `"${3 + i}"`,
      body: { lines: [{ sku: 'tea', quantity: i + 1, unit_price_cents: 450 }] },
    });
    expect([r.status, r.etag]).toEqual([200, `"${4 + i}"`]);
    wrote('o-1', 'user:alice', `req-15.${i}`);
  }

  // History: JSON or CSV by Accept, 406 otherwise; each with the ETag.
  const xml = await call('GET', '/orders/o-1/history', { accept: 'application/xml' });
  expect([xml.status, xml.etag]).toEqual([406, '"7"']);
  expect(xml.body).toMatchObject({ supported: ['application/json', 'text/csv'] });
  const csv = await call('GET', '/orders/o-1/history', { accept: 'text/csv' });
  expect([csv.status, csv.etag, csv.headers.get('content-type')]).toEqual([200, '"7"', 'text/csv; charset=utf-8']);
  const csvRows = csv.text.trimEnd().split('\r\n');
  expect(csvRows[0]).toBe('version,occurred_at,event_type,schema_version,actor_id,request_id,trace_id,event_id,payload');
  expect(csvRows.slice(1).map((r) => r.split(',').slice(4, 6))).toEqual(written.get('o-1')!.map((w) => [w.actor, w.requestId]));
  const preferred = await call('GET', '/orders/o-1/history', { accept: 'text/html;q=1, text/csv;q=0.5, application/json;q=0.9' });
  expect([preferred.status, preferred.headers.get('content-type')]).toEqual([200, 'application/json; charset=utf-8']);
  const json = preferred.body as { events: Array<{ version: number; event_type: string; actor_id: string; request_id: string }> };
  expect(json.events.map((e) => [e.version, e.actor_id, e.request_id])).toEqual(written.get('o-1')!.map((w, i) => [i + 1, w.actor, w.requestId]));
  const legacyHistory = await call('GET', `/orders/${LEGACY}/history`, { accept: '*/*' });
  expect((legacyHistory.body as { events: Array<{ schema_version: number; event_type: string }> }).events.map((e) => `${e.event_type} v${e.schema_version}`)).toEqual([
    'OrderPlaced v1',
    'OrderLinesSet v1',
    'OrderLinesSet v2',
  ]);

  // Reads: ETag, If-None-Match, unknown orders and routes.
  const current = await call('GET', '/orders/o-1');
  expect([current.status, current.etag]).toEqual([200, '"7"']);
  expect((await call('GET', '/orders/o-1', { ifNoneMatch: '"7"' })).status).toBe(304);
  expect((await call('GET', '/orders/nope')).status).toBe(404);
  expect((await call('GET', '/orders/nope/history', { accept: 'application/json' })).status).toBe(404);
  expect((await call('DELETE', '/orders/o-1')).status).toBe(405);
  expect((await call('GET', '/customers')).status).toBe(404);
  expect((await call('GET', '/orders/%E0%A4%A')).body).toMatchObject({ field: 'order id' });
  const longId = await call('PUT', '/orders/o-1/lines', { actor: 'user:alice', requestId: 'r'.repeat(129), body: { lines: [] } });
  expect([longId.status, longId.etag, (longId.body as { field: string }).field]).toEqual([400, '"7"', 'X-Request-Id']);
}, 180_000);

// ---- what came out of it ----------------------------------------------------------------------------

interface HistoryRow {
  event_id: string;
  aggregate_id: string;
  aggregate_version: number;
  event_type: string;
  schema_version: number;
  payload: Record<string, unknown>;
  occurred_at: Date;
  actor_id: string;
  correlation_id: string | null;
}

async function history(): Promise<HistoryRow[]> {
  const { rows } = await db.pool.query<HistoryRow>(
    `SELECT event_id::text, aggregate_id, aggregate_version::int, event_type, schema_version, payload, occurred_at, actor_id, correlation_id
       FROM outbox.outbox WHERE aggregate_type = 'order' ORDER BY aggregate_id, aggregate_version`,
  );
  return rows;
}

interface Line {
  sku: string;
  quantity: number;
  unit_price_cents: number;
}

/** The fold of the history, written here independently of the example: one state per order. */
function foldOrders(events: HistoryRow[]): Map<string, Record<string, unknown>> {
  const cents = (price: string): number => Math.round(Number(price) * 100);
  const orders = new Map<string, Record<string, unknown>>();
  for (const e of events) {
    const at = e.occurred_at.toISOString();
    const o = orders.get(e.aggregate_id);
    if (e.event_type === 'OrderPlaced') {
      orders.set(e.aggregate_id, {
        order_id: e.aggregate_id,
        customer_id: e.payload.customer_id,
        currency: e.payload.currency,
        status: 'open',
        lines: [],
        total_cents: 0,
        cancel_reason: null,
        placed_at: at,
        updated_at: at,
        version: e.aggregate_version,
      });
      continue;
    }
    if (!o) throw new Error(`${e.event_type} before OrderPlaced in the history of ${e.aggregate_id}`);
    o.updated_at = at;
    o.version = e.aggregate_version;
    if (e.event_type === 'OrderLinesSet') {
      const raw = e.payload.lines as Array<Record<string, unknown>>;
      const lines: Line[] = raw.map((l) => ({
        sku: String(l.sku),
        quantity: Number(l.quantity),
        unit_price_cents: e.schema_version === 1 ? cents(String(l.price)) : Number(l.unit_price_cents),
      }));
      o.lines = lines;
      o.total_cents = lines.reduce((s, l) => s + l.quantity * l.unit_price_cents, 0);
    } else if (e.event_type === 'OrderCancelled') {
      o.status = 'cancelled';
      o.cancel_reason = e.payload.reason;
    }
  }
  return orders;
}

function expectedOrderRows(events: HistoryRow[]): Record<string, unknown>[] {
  return [...foldOrders(events).values()]
    .map((o): Record<string, unknown> => ({ ...o, line_count: (o.lines as Line[]).length }))
    .sort((x, y) => String(x.order_id).localeCompare(String(y.order_id)));
}

function expectedTotals(events: HistoryRow[]): Record<string, unknown>[] {
  const totals = new Map<string, { customer_id: string; currency: string; open_orders: number; cancelled_orders: number; open_total_cents: number }>();
  for (const o of foldOrders(events).values()) {
    const key = `${String(o.customer_id)}/${String(o.currency)}`;
    const t = totals.get(key) ?? { customer_id: String(o.customer_id), currency: String(o.currency), open_orders: 0, cancelled_orders: 0, open_total_cents: 0 };
    if (o.status === 'cancelled') t.cancelled_orders++;
    else {
      t.open_orders++;
      t.open_total_cents += o.total_cents as number;
    }
    totals.set(key, t);
  }
  return [...totals.values()].sort((x, y) => `${x.customer_id}/${x.currency}`.localeCompare(`${y.customer_id}/${y.currency}`));
}

async function orderRows(): Promise<Record<string, unknown>[]> {
  const { rows } = await db.pool.query(
    `SELECT order_id, customer_id, currency, status, lines, line_count, total_cents::int, cancel_reason, placed_at, updated_at, version::int FROM outbox_read.orders ORDER BY order_id`,
  );
  return rows.map((r: Record<string, unknown>) => ({ ...r, placed_at: (r.placed_at as Date).toISOString(), updated_at: (r.updated_at as Date).toISOString() }));
}

async function totalRows(): Promise<Record<string, unknown>[]> {
  const { rows } = await db.pool.query(
    `SELECT customer_id, currency, open_orders, cancelled_orders, open_total_cents::int FROM outbox_read.customer_totals ORDER BY customer_id || '/' || currency`,
  );
  return rows;
}

const same = (a: unknown, b: unknown): boolean => isDeepStrictEqual(a, b);

test('both read models equal the fold of the history, and the snapshots equal the fold up to their version', async () => {
  const events = await history();
  expect(events).toHaveLength(3 + 7 + 3 + 2);
  await waitUntil('every order event is delivered', async () => {
    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox.outbox_delivery WHERE delivered_at IS NULL');
    return rows[0]!.n === '0' ? true : undefined;
  });
  // The projector applies asynchronously (each projection on its own): wait until the read models reach
  // the fold and audit_log holds every event (it takes the snapshots), then compare. A view the projector
  // has not created yet counts as not there yet.
  const reached = (check: () => Promise<boolean>) => async () => ((await check().catch(() => false)) ? true : undefined);
  const auditedCount = async () => (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM outbox_read.audit_log WHERE aggregate_type = 'order'`)).rows[0]!.n;
  await waitUntil(
    'the orders read model equals the fold',
    reached(async () => same(await orderRows(), expectedOrderRows(events))),
  ).catch(() => undefined);
  await waitUntil(
    'the customer totals equal the fold',
    reached(async () => same(await totalRows(), expectedTotals(events))),
  ).catch(() => undefined);
  await waitUntil(
    'audit_log holds every order event',
    reached(async () => (await auditedCount()) === events.length),
  );
  expect(await orderRows()).toEqual(expectedOrderRows(events));
  expect(await totalRows()).toEqual(expectedTotals(events));
  expect(await totalRows()).toEqual([
    { customer_id: 'c-1', currency: 'EUR', open_orders: 3, cancelled_orders: 0, open_total_cents: 1800 + 2 * 1999 + 5 * 399 },
    { customer_id: 'c-2', currency: 'USD', open_orders: 0, cancelled_orders: 1, open_total_cents: 0 },
  ]);

  // The order reducer's snapshots (every 3 events of an aggregate): o-1 at 3 and 6, the legacy order at 3.
  const { rows: snaps } = await db.pool.query<{ aggregate_id: string; aggregate_version: number; state: Record<string, unknown> }>(
    `SELECT aggregate_id, aggregate_version::int, state FROM outbox_read.projector_snapshots WHERE aggregate_type = 'order' ORDER BY aggregate_id, aggregate_version`,
  );
  expect(snaps.map((s) => `${s.aggregate_id}@${s.aggregate_version}`)).toEqual(['legacy-1@3', 'o-1@3', 'o-1@6', 'o-2@3']);
  for (const s of snaps) {
    const upTo = events.filter((e) => e.aggregate_id === s.aggregate_id && e.aggregate_version <= s.aggregate_version);
    expect(s.state).toEqual(foldOrders(upTo).get(s.aggregate_id));
  }
  // `outbox project` decoded the v1 events through the config module's upcaster: the audit log holds
  // them in the latest shape (the history in the outbox table keeps them as written).
  const { rows: audited } = await db.pool.query<{ schema_version: number; writer_schema_version: number; payload: unknown }>(
    `SELECT schema_version, writer_schema_version, payload FROM outbox_read.audit_log WHERE aggregate_type = 'order' AND aggregate_id = $1 AND aggregate_version = 2`,
    [LEGACY],
  );
  expect(audited).toEqual([
    {
      schema_version: 2,
      writer_schema_version: 1,
      payload: {
        lines: [
          { sku: 'tea', quantity: 3, unit_price_cents: 450 },
          { sku: 'pot', quantity: 1, unit_price_cents: 1999 },
        ],
      },
    },
  ]);
  // The service's own view of an order (latest snapshot + newer events) is the fold too.
  for (const [id, state] of foldOrders(events)) {
    const r = await call('GET', `/orders/${id}`);
    expect([r.etag, r.body]).toEqual([`"${String(state.version)}"`, state]);
  }
}, 150_000);

test('the topic decodes through the registry with a standard Confluent client, v1 events in their v1 shape', async () => {
  const events = await history();
  const kafka = createKafka(loadConfig({ KAFKA_BROKERS: process.env.KAFKA_BROKERS, LOG_LEVEL: 'silent' }, { kafka: true }).kafka, silentLogger());
  const registry = createRegistry({ url: process.env.SCHEMA_REGISTRY_URL! });
  const messages = await readTopics(kafka, [topic], { count: events.length });
  const decoded = await Promise.all(
    messages.map(async (m): Promise<Record<string, unknown>> => {
      const d = (await registry.decode(m.message.value!)) as Record<string, unknown>;
      return { key: m.message.key?.toString(), ...d };
    }),
  );
  const byId = new Map(decoded.map((d) => [d.event_id, d]));
  expect(byId.size).toBe(events.length);
  for (const e of events) {
    expect(byId.get(e.event_id)).toMatchObject({
      key: e.aggregate_id,
      aggregate_type: 'order',
      aggregate_id: e.aggregate_id,
      aggregate_version: e.aggregate_version,
      event_type: e.event_type,
      schema_version: e.schema_version,
      actor_id: e.actor_id,
      correlation_id: e.correlation_id,
      payload: e.payload,
    });
  }
}, 120_000);

test('outbox audit history order/<id> shows each change with its actor, request id and state', async () => {
  const events = await history();
  for (const id of ['o-1', LEGACY]) {
    const { stdout } = await outbox(['audit', 'history', `order/${id}`, '--format', 'json']);
    const audit = JSON.parse(stdout) as { aggregate: string; events: Array<{ actor_id: string; correlation_id: string; aggregate_version: number; state_after: unknown }> };
    expect(audit.aggregate).toBe(`order/${id}`);
    expect(audit.events.map((e) => ({ actor: e.actor_id, requestId: e.correlation_id }))).toEqual(written.get(id));
    const mine = events.filter((e) => e.aggregate_id === id);
    audit.events.forEach((e, i) => expect(e.state_after).toEqual(foldOrders(mine.slice(0, i + 1)).get(id)));
  }
  const { stdout: table } = await outbox(['audit', 'history', 'order/o-2']);
  expect(table).toMatch(/actor +support:frank/);
  expect(table).toMatch(/correlation +req-11/);
}, 120_000);

test('outbox rebuild orders (and customer_totals) gives the same rows', async () => {
  const before = { orders: await orderRows(), totals: await totalRows() };
  expect(before.orders.length).toBe(4);
  const { stdout } = await outbox(['rebuild', 'orders']);
  expect(stdout).toMatch(/^projection orders: generation \d+ built from 15 event\(s\) .*, swapped in/m);
  expect(await orderRows()).toEqual(before.orders);
  await outbox(['rebuild', 'customer_totals']);
  expect(await totalRows()).toEqual(before.totals);

  // The service, the relay and the projector stop cleanly on SIGTERM, having logged no error and no
  // warning (but the projector's wait for the topic the relay creates, when it starts first).
  for (const c of [...children]) expect(await stopGracefully(c)).toBe(0);
  for (const c of children) {
    const problems = c
      .output()
      .split('\n')
      .filter((l) => /"level":(40|50|60)|\(node:\d+\) \w*Warning|Error/.test(l) && !/"msg":"waiting for topic\(s\) /.test(l));
    expect(problems).toEqual([]);
  }
}, 180_000);
