/**
 * Does the relay's claim get slower as the history grows? For each history size (default 100,000 and
 * 5,000,000 rows, 1 KB payloads, every one delivered and its delivery row kept, as within the retention
 * period) a database gets `--pending` new events written through the real insert trigger, and the
 * relay's own claim (relay/claim-batch.ts, batch 1,000) is timed `--repeat` times, alone and as the
 * pipelined claim that excludes the 1,000 events in flight, in interleaved rounds over all history sizes
 * (the machine's load weighs on each alike). EXPLAIN (ANALYZE, BUFFERS) shows how many
 * pages one claim touches.
 *
 *   npm run bench:claim-scale [-- --histories 100000,5000000 --pending 10000 --repeat 50]
 *
 * The history is loaded in bulk with triggers off (session_replication_role = replica: rows shaped as
 * the trigger would write them, without hashing 5 million events); the pending events go through the
 * trigger. PostgreSQL: a private cluster (initdb/pg_ctl), removed at the end.
 * Writes bench/results/claim-scale-<date>.json.
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { silentLogger } from '../core/logger';
import { migrate } from '../infra/migrate';
import { claimBatch } from '../relay/claim-batch';
import { removeStaleClusters, startPrivateCluster } from './peers/postgres-cluster';
import { freePort } from './peers/ports';
import { writeBacklog } from './peers/workload';
import { bulkOutbox } from './bulk-outbox';
import { arg, percentile, table, withSearchPath, writeResult } from './support';
import { DEFAULT_SCHEMA } from '../core/config';

const argv = process.argv.slice(2);
const histIdx = argv.indexOf('--histories');
const HISTORIES = histIdx >= 0 ? argv[histIdx + 1]!.split(',').map(Number) : [100_000, 5_000_000];
if (HISTORIES.some((h) => !Number.isInteger(h) || h < 0)) throw new Error('--histories must be a comma-separated list of row counts');
const PENDING = arg('pending', 10_000);
const REPEAT = arg('repeat', 50);
const BATCH = 1_000;
const say = (msg: string): void => void process.stderr.write(`[claim-scale] ${msg}\n`);

interface Timing {
  p50: number;
  p99: number;
  max: number;
}
function timing(ms: number[]): Timing {
  const s = [...ms].sort((a, b) => a - b);
  const r = (v: number): number => Number(v.toFixed(2));
  return { p50: r(percentile(s, 50)), p99: r(percentile(s, 99)), max: r(s[s.length - 1] ?? NaN) };
}

interface Prepared {
  pool: pg.Pool;
  sql: string;
  inFlight: string[];
  claims: number[];
  pipelined: number[];
}

/** A pool on the database, the claim's SQL text and the ids of the first batch (the pipelined claim excludes them). */
async function prepare(url: string): Promise<Prepared> {
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  let sql = '';
  const recorder = { query: (text: string, params: unknown[]) => ((sql = text), pool.query(text, params)) } as unknown as pg.Pool;
  const first = await claimBatch(recorder, { schema: DEFAULT_SCHEMA, limit: BATCH });
  if (first.length !== BATCH) throw new Error(`claimed ${first.length}, expected ${BATCH}`);
  for (let i = 0; i < 5; i++) await claimBatch(pool, { schema: DEFAULT_SCHEMA, limit: BATCH }); // warm the cache
  return { pool, sql, inFlight: first.map((e) => e.id), claims: [], pipelined: [] };
}

async function timeClaim(p: Prepared, exclude: string[]): Promise<number> {
  const t = performance.now();
  const rows = await claimBatch(p.pool, { schema: DEFAULT_SCHEMA, limit: BATCH, inFlight: exclude });
  const ms = performance.now() - t;
  if (rows.length !== BATCH) throw new Error(`claimed ${rows.length}, expected ${BATCH}`);
  return ms;
}

async function explain(p: Prepared): Promise<{ executionMs: number; sharedHit: number; sharedRead: number; plan: string }> {
  const { rows } = await p.pool.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, number>; 'Execution Time': number }> }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${p.sql}`, [
    BATCH,
    p.inFlight,
  ]);
  const plan = rows[0]!['QUERY PLAN'][0]!;
  const text = await p.pool.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${p.sql}`, [BATCH, p.inFlight]);
  return {
    executionMs: Number(plan['Execution Time'].toFixed(2)),
    sharedHit: plan.Plan['Shared Hit Blocks'] ?? 0,
    sharedRead: plan.Plan['Shared Read Blocks'] ?? 0,
    // the in-flight id list is 1,000 numbers long: shortened
    plan: text.rows.map((r) => r['QUERY PLAN'].replace(/'\{[0-9,]{100,}\}'/g, (m) => `'{${m.split(',').length} ids}'`)).join('\n'),
  };
}

async function main(): Promise<void> {
  removeStaleClusters();
  const cluster = await startPrivateCluster({ port: await freePort() });
  process.once('SIGINT', () => void cluster.destroy().then(() => process.exit(130)));
  const results: Array<Record<string, unknown>> = [];
  try {
    // Load every history first, then time the claims in interleaved rounds (one claim on each database in
    // turn), so that the machine's load at any moment weighs on every history size alike.
    const dbs: Array<{ history: number; name: string; size: string; loadRate: number; prepared?: Prepared }> = [];
    const admin = new pg.Client({ connectionString: cluster.url('postgres') });
    await admin.connect();
    for (const [i, history] of HISTORIES.entries()) {
      const name = `claim_scale_${i}`;
      await admin.query(`CREATE DATABASE ${name}`);
      const url = withSearchPath(cluster.url(name));
      const m = new pg.Client({ connectionString: url });
      await m.connect();
      await migrate(m, { schema: DEFAULT_SCHEMA, logger: silentLogger() });
      await m.end();
      say(`history ${history.toLocaleString('en-US')} rows: loading`);
      const loadRate = await bulkOutbox(url, { rows: history, delivered: true, aggregatePrefix: 'h' });
      say(`history loaded (${loadRate} rows/s); ${PENDING} pending events through the trigger`);
      await writeBacklog(url, 'kafka-outbox', PENDING);
      const v = new pg.Client({ connectionString: url });
      await v.connect();
      await v.query('VACUUM ANALYZE outbox');
      await v.query('VACUUM ANALYZE outbox_delivery');
      const size = (await v.query<{ s: string }>(`SELECT pg_size_pretty(pg_total_relation_size('outbox') + pg_total_relation_size('outbox_delivery')) AS s`)).rows[0]!.s;
      await v.end();
      dbs.push({ history, name, size, loadRate });
    }
    for (const db of dbs) db.prepared = await prepare(withSearchPath(cluster.url(db.name)));
    for (let round = 0; round < REPEAT; round++) {
      for (const db of dbs) {
        db.prepared!.claims.push(await timeClaim(db.prepared!, []));
        db.prepared!.pipelined.push(await timeClaim(db.prepared!, db.prepared!.inFlight));
      }
    }
    for (const db of dbs) {
      const p = db.prepared!;
      const figures = { claim: timing(p.claims), pipelinedClaim: timing(p.pipelined), explain: await explain(p) };
      await p.pool.end();
      results.push({ history: db.history, pending: PENDING, size: db.size, historyLoadRowsPerSecond: db.loadRate, ...figures });
      say(
        `history ${db.history}: claim p50 ${figures.claim.p50} ms, pipelined p50 ${figures.pipelinedClaim.p50} ms, ${figures.explain.sharedHit + figures.explain.sharedRead} buffers`,
      );
    }
    await admin.end();
  } finally {
    await cluster.destroy();
  }
  const date = new Date().toISOString();
  const machine = {
    cpus: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
  };
  const file = writeResult(`claim-scale-${date.replace(/[:.]/g, '-')}`, { date, machine, batch: BATCH, repeat: REPEAT, results });
  const rows = results.map((r) => {
    const f = r as { history: number; size: string; claim: Timing; pipelinedClaim: Timing; explain: { executionMs: number; sharedHit: number; sharedRead: number } };
    return {
      'history rows': f.history.toLocaleString('en-US'),
      'tables + indexes': f.size,
      'claim 1,000 (p50 / p99)': `${f.claim.p50} / ${f.claim.p99} ms`,
      'pipelined claim, 1,000 in flight (p50 / p99)': `${f.pipelinedClaim.p50} / ${f.pipelinedClaim.p99} ms`,
      'EXPLAIN: execution, buffers': `${f.explain.executionMs} ms, ${f.explain.sharedHit + f.explain.sharedRead}`,
    };
  });
  process.stdout.write(
    `\nrelay claim vs history size — ${date}, ${machine.cpus} cores, ${machine.memoryGiB} GiB, load ${machine.loadAverage}; ${PENDING} pending, ${REPEAT} claims each\n\n${table(rows)}\n\nresults: ${file}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`claim-scale failed: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
