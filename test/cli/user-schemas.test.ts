import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { useTestDatabase } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { childEnv, emptyEnvFile, REPO, runOutbox } from './run-outbox';

// A team's own domain without a config module: a temporary directory holding only
// invoice/InvoiceIssued.v1.avsc, named by OUTBOX_SCHEMAS_DIR. The relay publishes plain-SQL invoice
// events to invoice.events, a standard Confluent client decodes them through the registry, an event
// without a schema is parked with the file it expected, and `outbox parked retry` after adding the file
// publishes it.
const db = useTestDatabase({ poolSize: 2 });
const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-domain-'));
const cwd = mkdtempSync(path.join(os.tmpdir(), 'outbox-cwd-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(cwd, { recursive: true, force: true });
});

const INVOICE_ISSUED = {
  type: 'record',
  name: 'InvoiceIssuedPayload',
  fields: [
    { name: 'customer_id', type: 'string' },
    { name: 'amount_cents', type: 'long' },
    { name: 'currency', type: 'string' },
  ],
};
const INVOICE_VOIDED = { type: 'record', name: 'InvoiceVoidedPayload', fields: [{ name: 'reason', type: 'string' }] };

let voidedId = '';

async function insert(aggregateId: string, eventType: string, payload: unknown): Promise<string> {
  const { rows } = await db.pool.query<{ event_id: string }>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     VALUES ('invoice', $1, $2, 1, $3::jsonb, 'billing:7', 'trace-invoice') RETURNING event_id::text`,
    [aggregateId, eventType, JSON.stringify(payload)],
  );
  return rows[0]!.event_id;
}

async function waitUntil<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('OUTBOX_SCHEMAS_DIR alone: invoice events reach invoice.events and decode with a Confluent client; a missing schema parks, retry after adding it publishes', async () => {
  mkdirSync(path.join(dir, 'invoice'));
  writeFileSync(path.join(dir, 'invoice', 'InvoiceIssued.v1.avsc'), JSON.stringify(INVOICE_ISSUED));
  const env = childEnv({
    OUTBOX_ENV_FILE: emptyEnvFile(),
    DATABASE_URL: db.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
    SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
    OUTBOX_SCHEMAS_DIR: dir,
    LOG_LEVEL: 'warn',
  });
  const issued = [await insert('inv-1', 'InvoiceIssued', { customer_id: 'c-1', amount_cents: 12_500, currency: 'EUR' })];
  const voided = await insert('inv-2', 'InvoiceVoided', { reason: 'duplicate' });
  voidedId = voided;
  issued.push(await insert('inv-3', 'InvoiceIssued', { customer_id: 'c-3', amount_cents: 990, currency: 'USD' }));

  // cwd: an empty directory, so no config module is found; the schemas come from OUTBOX_SCHEMAS_DIR only.
  const relay = spawn(process.execPath, [path.join(REPO, 'bin', 'outbox.js'), 'relay'], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  relay.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => relay.on('close', (code) => resolve(code)));
  try {
    const reason = await waitUntil('the invoice events are delivered and the one without a schema is parked', async () => {
      const { rows } = await db.pool.query<{ delivered: string; reason: string | null }>(
        `SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL)::text AS delivered, max(park_reason) AS reason FROM outbox_delivery`,
      );
      return rows[0]!.delivered === '2' && rows[0]!.reason ? rows[0]!.reason : undefined;
    });
    expect(reason).toContain('invoice/InvoiceVoided.v1.avsc not found');
    expect(reason).toContain(dir);

    const config = loadConfig({ KAFKA_BROKERS: process.env.KAFKA_BROKERS, LOG_LEVEL: 'silent' }, { kafka: true });
    const kafka = createKafka(config.kafka, silentLogger());
    const registry = new SchemaRegistry({ host: process.env.SCHEMA_REGISTRY_URL! });
    const decodeOurs = async (ids: string[]) => {
      const messages = (await readTopics(kafka, ['invoice.events'])).filter((m) => ids.includes(m.message.headers?.event_id?.toString() ?? ''));
      return Promise.all(
        messages.map(async (m) => (await registry.decode(m.message.value!)) as { event_id: string; aggregate_id: string; event_type: string; payload: Record<string, unknown> }),
      );
    };
    const decoded = await decodeOurs(issued);
    expect(
      decoded.map((d) => ({ id: d.event_id, type: d.event_type, aggregate: d.aggregate_id, payload: d.payload })).sort((a, b) => a.aggregate.localeCompare(b.aggregate)),
    ).toEqual([
      { id: issued[0], type: 'InvoiceIssued', aggregate: 'inv-1', payload: { customer_id: 'c-1', amount_cents: 12_500, currency: 'EUR' } },
      { id: issued[1], type: 'InvoiceIssued', aggregate: 'inv-3', payload: { customer_id: 'c-3', amount_cents: 990, currency: 'USD' } },
    ]);

    // The team adds the schema while the relay runs, then retries the parked event: it is published.
    writeFileSync(path.join(dir, 'invoice', 'InvoiceVoided.v1.avsc'), JSON.stringify(INVOICE_VOIDED));
    const retry = await runOutbox(['parked', 'retry', voided], env);
    expect(retry.lines).toEqual([]);
    expect(retry.code).toBe(0);
    await waitUntil('the retried event is delivered', async () => {
      const { rows } = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL');
      return rows[0]!.n === '0' ? true : undefined;
    });
    const [voidedMessage] = await decodeOurs([voided]);
    expect(voidedMessage).toMatchObject({ event_id: voided, event_type: 'InvoiceVoided', aggregate_id: 'inv-2', payload: { reason: 'duplicate' } });
  } finally {
    relay.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
  // The only error logged is the parking of the event without a schema.
  const errors = stderr.split('\n').filter((l) => /"level":(50|60)/.test(l));
  expect(errors.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual([
    `parked event ${voidedId}: unknown event type InvoiceVoided v1: invoice/InvoiceVoided.v1.avsc not found in ${dir}`,
  ]);
}, 180_000);

test('an OUTBOX_SCHEMAS_DIR that does not exist fails the relay at start with one line naming it', async () => {
  const missing = path.join(dir, 'nope');
  const r = await runOutbox(
    ['relay'],
    childEnv({
      OUTBOX_ENV_FILE: emptyEnvFile(),
      DATABASE_URL: db.url,
      KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
      SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
      OUTBOX_SCHEMAS_DIR: missing,
    }),
  );
  expect(r.code).toBe(1);
  expect(r.lines).toEqual([`outbox: schemas directory ${missing} does not exist (from OUTBOX_SCHEMAS_DIR)`]);
}, 60_000);
