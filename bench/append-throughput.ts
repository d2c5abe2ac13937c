/**
 * Append throughput of the write path: events/s with 4 connections, one event per transaction and 100
 * events per transaction (appendEvents → one INSERT ... SELECT FROM unnest(...) per transaction).
 *
 *   npx tsx bench/append-throughput.ts [--seconds 10] [--connections 4] [--aggregates 1000]
 *
 * Creates its own database (outbox_bench_<random>) from the migrations, and drops it at the end.
 * Uses DATABASE_URL from the environment / .stack/env. Writes a JSON summary to bench/results/.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { loadConfig } from '../core/config';
import { createLogger } from '../core/logger';
import { migrate } from '../infra/migrate';
import { appendEvents, verifyChain, withTransaction, type NewEvent } from '../writer';
import { arg, withDatabase, withSearchPath, percentile } from './support';

const SECONDS = arg('seconds', 10);
const CONNECTIONS = arg('connections', 4);
const AGGREGATES = arg('aggregates', 1000);

function event(i: number, worker: number): NewEvent {
  return {
    aggregateType: 'account',
    aggregateId: `acc-${(i * 7919 + worker * 104729) % AGGREGATES}`,
    eventType: 'FundsDeposited',
    schemaVersion: 1,
    payload: { amount: 100 + (i % 900), currency: 'EUR', reference: `ref-${worker}-${i}`, memo: 'benchmark deposit' },
    actorId: `user:${worker}`,
    traceId: randomBytes(16).toString('hex'),
    correlationId: `req-${worker}-${i}`,
  };
}

interface Scenario {
  name: string;
  eventsPerTx: number;
}

interface Outcome {
  scenario: string;
  eventsPerTx: number;
  connections: number;
  transactions: number;
  events: number;
  seconds: number;
  eventsPerSecond: number;
  txPerSecond: number;
  p50TxMs: number;
  p99TxMs: number;
}

async function run(pool: pg.Pool, s: Scenario): Promise<Outcome> {
  // Warm-up: one transaction per connection.
  await Promise.all(Array.from({ length: CONNECTIONS }, (_, w) => withTransaction(pool, (c) => appendEvents(c, [event(0, w)]))));
  const deadline = Date.now() + SECONDS * 1000;
  const latencies: number[] = [];
  let events = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async (_, w) => {
      let i = 0;
      while (Date.now() < deadline) {
        const batch = Array.from({ length: s.eventsPerTx }, () => event(i++, w));
        const t0 = process.hrtime.bigint();
        const r = await withTransaction(pool, (c) => appendEvents(c, batch));
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        if (r.status !== 'appended') throw new Error('unexpected conflict');
        events += batch.length;
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return {
    scenario: s.name,
    eventsPerTx: s.eventsPerTx,
    connections: CONNECTIONS,
    transactions: latencies.length,
    events,
    seconds: Number(seconds.toFixed(2)),
    eventsPerSecond: Math.round(events / seconds),
    txPerSecond: Math.round(latencies.length / seconds),
    p50TxMs: Number(percentile(latencies, 50).toFixed(2)),
    p99TxMs: Number(percentile(latencies, 99).toFixed(2)),
  };
}

async function main(): Promise<void> {
  const config = loadConfig(undefined, { database: true });
  const logger = createLogger({ level: 'warn', name: 'bench' });
  const dbName = `outbox_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: withDatabase(config.databaseUrl, 'postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${dbName}"`);
  const url = withSearchPath(withDatabase(config.databaseUrl, dbName));
  const pool = new pg.Pool({ connectionString: url, max: CONNECTIONS, application_name: 'outbox-bench' });
  pool.on('error', () => undefined);
  try {
    const c = await pool.connect();
    try {
      await migrate(c, { schema: config.schema, projectorSchema: config.projector.schema, logger });
    } finally {
      c.release();
    }
    const server = await pool.query<{ v: string; sc: string; fs: string }>(
      `SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fs`,
    );
    const outcomes: Outcome[] = [];
    for (const s of [
      { name: '1 event / tx', eventsPerTx: 1 },
      { name: '100 events / tx', eventsPerTx: 100 },
    ]) {
      outcomes.push(await run(pool, s));
    }
    const v = await pool.connect();
    let verified;
    try {
      verified = await verifyChain(v);
    } finally {
      v.release();
    }

    const info = server.rows[0];
    const out = process.stdout;
    out.write(
      `\nappend throughput — PostgreSQL ${info?.v} (synchronous_commit=${info?.sc}, fsync=${info?.fs}), ${CONNECTIONS} connections, ` +
        `${AGGREGATES} aggregates, ${SECONDS}s per scenario\n\n`,
    );
    const header = ['scenario', 'events/s', 'tx/s', 'events', 'tx', 'p50 tx ms', 'p99 tx ms'];
    const rows = outcomes.map((o) => [
      o.scenario,
      String(o.eventsPerSecond),
      String(o.txPerSecond),
      String(o.events),
      String(o.transactions),
      String(o.p50TxMs),
      String(o.p99TxMs),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
    out.write(`${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}\n\n`);
    out.write(`verifyChain over all ${verified.checked} events: ok=${verified.ok}, ${verified.eventsPerSecond} events/s\n`);
    for (const o of outcomes) out.write(`RESULT ${o.scenario}: ${o.eventsPerSecond} events/s\n`);

    const dir = path.join(__dirname, 'results');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, `append-throughput-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, JSON.stringify({ server: info, connections: CONNECTIONS, aggregates: AGGREGATES, seconds: SECONDS, outcomes, verify: verified }, null, 2));
    out.write(`summary written to ${path.relative(process.cwd(), file)}\n`);
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
    await admin.end();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
