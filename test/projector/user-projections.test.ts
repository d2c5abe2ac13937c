import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { childEnv, emptyEnvFile, REPO, runOutbox } from '../cli/run-outbox';
import { useTestDatabase } from '../support/isolation';
import { spawnTs, type Child } from '../support/processes';

// A team's projections and reducer, declared in its config module and run by the CLI: `outbox project`
// runs them next to audit_log (which covers every aggregate type of the catalog), an event type without
// a handler goes to the dead-letter topic unless the projection skips such types, `outbox rebuild <name>`
// rebuilds one of them, and `outbox audit history` folds states with the team's reducer.
const db = useTestDatabase({ poolSize: 2 });
const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-projections-'));
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) {
    if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    await c.exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

// Aggregate types of this run only (their subjects and topics are new on the shared registry and Kafka).
const tag = randomBytes(3).toString('hex');
const invoice = `inv_${tag}`;
const customer = `cus_${tag}`;

const record = (fields: Array<[string, string]>) => JSON.stringify({ type: 'record', fields: fields.map(([name, type]) => ({ name, type })) });

function writeProject(): string {
  const files: Record<string, string> = {
    [`schemas/${invoice}/InvoiceIssued.v1.avsc`]: record([
      ['customer_id', 'string'],
      ['amount_cents', 'long'],
    ]),
    [`schemas/${invoice}/InvoicePaid.v1.avsc`]: record([['paid_cents', 'long']]),
    [`schemas/${customer}/CustomerCreated.v1.avsc`]: record([['name', 'string']]),
    'outbox.config.js': `const { defineConfig, defineProjection, defineReducer } = require(${JSON.stringify(path.join(REPO, 'index.ts'))});

const invoices = defineProjection({
  name: 'invoices',
  aggregateTypes: [${JSON.stringify(invoice)}],
  tables: { invoices: 'CREATE TABLE invoices (invoice_id text PRIMARY KEY, customer_id text NOT NULL, amount_cents bigint NOT NULL)' },
  handlers: {
    InvoiceIssued: async (e, { client, table }) => {
      await client.query(\`INSERT INTO \${table('invoices')} VALUES ($1, $2, $3)\`, [e.aggregateId, e.payload.customer_id, e.payload.amount_cents]);
    },
  },
});

const payments = defineProjection({
  name: 'payments',
  aggregateTypes: [${JSON.stringify(invoice)}],
  tables: { payments: (schema) => \`CREATE TABLE \${schema}.payments (invoice_id text PRIMARY KEY, paid_cents bigint NOT NULL)\` },
  handlers: {
    InvoicePaid: async (e, { client, table }) => {
      await client.query(\`INSERT INTO \${table('payments')} VALUES ($1, $2)\`, [e.aggregateId, e.payload.paid_cents]);
    },
  },
  unhandledEventTypes: 'skip',
});

const balance = defineReducer({
  aggregateType: ${JSON.stringify(invoice)},
  version: 1,
  initial: { due_cents: 0 },
  evolve: (s, e) => ({ due_cents: s.due_cents + (e.eventType === 'InvoiceIssued' ? e.payload.amount_cents : -e.payload.paid_cents) }),
});

module.exports = defineConfig({ schemasDir: 'schemas', projections: [invoices, payments], reducers: [balance] });
`,
  };
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
  return path.join(dir, 'outbox.config.js');
}

async function insert(aggregateType: string, aggregateId: string, eventType: string, payload: unknown): Promise<void> {
  await db.pool.query(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ($1, $2, $3, 1, $4::jsonb, 'billing:1', 'trace-p')`,
    [aggregateType, aggregateId, eventType, JSON.stringify(payload)],
  );
}

async function rows<T>(sql: string): Promise<T[]> {
  return (await db.pool.query(sql)).rows as T[];
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, child: Child, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${child.output().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test("outbox project runs the config module's projections and audit_log over every catalog type; unhandled types dead-lettered or skipped; rebuild and audit history use the same domain", async () => {
  const config = writeProject();
  const env = childEnv({
    OUTBOX_ENV_FILE: emptyEnvFile(),
    DATABASE_URL: db.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
    SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
    OUTBOX_CONFIG: config,
    OUTBOX_RELAY_POLL_INTERVAL: '200ms',
    OUTBOX_TOPIC_PARTITIONS: '2',
    LOG_LEVEL: 'warn',
  });
  await insert(invoice, 'i-1', 'InvoiceIssued', { customer_id: 'c-1', amount_cents: 1000 });
  await insert(invoice, 'i-1', 'InvoicePaid', { paid_cents: 400 });
  await insert(invoice, 'i-2', 'InvoiceIssued', { customer_id: 'c-2', amount_cents: 250 });
  await insert(customer, 'c-1', 'CustomerCreated', { name: 'Ada' });

  const relay = spawnTs('bin/outbox.js', env, ['relay']);
  children.push(relay);
  await waitFor(
    'the relay to publish',
    async () => ((await rows<{ n: number }>('SELECT count(*)::int AS n FROM outbox_delivery WHERE delivered_at IS NOT NULL'))[0]!.n === 4 ? true : undefined),
    relay,
  );
  const projector = spawnTs('bin/outbox.js', env, ['project']);
  children.push(projector);

  await waitFor(
    'every projection to catch up',
    async () => {
      const [audit] = await rows<{ n: number }>('SELECT count(*)::int AS n FROM outbox_read.audit_log');
      const [inv] = await rows<{ n: number }>('SELECT count(*)::int AS n FROM outbox_read.invoices');
      const [pay] = await rows<{ n: number }>('SELECT count(*)::int AS n FROM outbox_read.payments');
      const [dead] = await rows<{ n: number }>('SELECT count(*)::int AS n FROM outbox_read.projector_dead_letters');
      return audit!.n === 4 && inv!.n === 2 && pay!.n === 1 && dead!.n === 1 ? true : undefined;
    },
    projector,
  );
  expect(await rows('SELECT aggregate_type, count(*)::int AS n FROM outbox_read.audit_log GROUP BY 1 ORDER BY 1')).toEqual([
    { aggregate_type: customer, n: 1 },
    { aggregate_type: invoice, n: 3 },
  ]);
  expect(await rows('SELECT * FROM outbox_read.invoices ORDER BY invoice_id')).toEqual([
    { invoice_id: 'i-1', customer_id: 'c-1', amount_cents: '1000' },
    { invoice_id: 'i-2', customer_id: 'c-2', amount_cents: '250' },
  ]);
  expect(await rows('SELECT * FROM outbox_read.payments')).toEqual([{ invoice_id: 'i-1', paid_cents: '400' }]);
  // InvoicePaid has no handler in `invoices` (dead-letter by default); `payments` skips InvoiceIssued.
  expect(await rows('SELECT projection, kind, reason, dlq_topic FROM outbox_read.projector_dead_letters')).toEqual([
    { projection: 'invoices', kind: 'handler_rejected', reason: 'projection invoices has no handler for event type InvoicePaid', dlq_topic: `${invoice}.events.dlq` },
  ]);

  projector.proc.kill('SIGTERM');
  expect(await projector.exited).toBe(0);

  const [rebuilt, unknown, history] = await Promise.all([
    runOutbox(['rebuild', 'payments', '--json'], env, 120_000, dir),
    runOutbox(['rebuild', 'nope'], env, 60_000, dir),
    runOutbox(['audit', 'history', `${invoice}/i-1`, '--json'], env, 60_000, dir),
  ]);
  expect(rebuilt.lines.filter((l) => !l.startsWith('{'))).toEqual([]);
  expect(rebuilt.code).toBe(0);
  expect(JSON.parse(rebuilt.stdout)).toMatchObject({ generation: 2, swapped: true, previousGeneration: 1 });
  expect(await rows('SELECT * FROM outbox_read.payments')).toEqual([{ invoice_id: 'i-1', paid_cents: '400' }]);
  expect(unknown.code).toBe(1);
  expect(unknown.lines).toEqual([`outbox: no projection named nope (projections: audit_log, invoices, payments, from ${config})`]);
  expect(history.code).toBe(0);
  const events = (JSON.parse(history.stdout) as { events: Array<{ event_type: string; state_after: unknown }> }).events;
  expect(events.map((e) => [e.event_type, e.state_after])).toEqual([
    ['InvoiceIssued', { due_cents: 1000 }],
    ['InvoicePaid', { due_cents: 600 }],
  ]);

  relay.proc.kill('SIGTERM');
  expect(await relay.exited).toBe(0);
}, 300_000);
