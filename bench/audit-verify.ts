/**
 * `outbox audit verify` over a large history: wall time and events/s of the command as an auditor runs
 * it, verifyChain in process at several parallelisms and the previous implementation (keyset pages),
 * beside same-run baselines that bound it from below (reading the same rows, and PostgreSQL hashing them
 * itself). Each row also gives this process's CPU seconds (the machine is shared: wall time depends on
 * its load, CPU time much less).
 *
 *   npx tsx bench/audit-verify.ts [--events 1000000] [--per-aggregate 10] [--runs 3]
 *
 * Creates a database of its own (bench_audit_<random>), fills it through the insert trigger (the real
 * chain), measures, and drops it (BENCH_KEEP_DB=1 keeps it; BENCH_DB=<name> reuses a kept one). Uses
 * DATABASE_URL from the environment / .stack/env. Writes a JSON summary to bench/results/.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { verifyChain } from '../writer/verify';
import { previousVerifyChain } from './previous-verify';
import { benchDatabase, machine, table, withDatabase, withSearchPath, writeResult, arg } from './support';

const REPO = path.resolve(__dirname, '..');

async function fill(url: string, events: number, perAggregate: number): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const have = Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox')).rows[0]!.n);
    if (have >= events) return 0;
    const started = Date.now();
    const aggregates = Math.ceil(events / perAggregate);
    // Round by round: version v of every aggregate, in slices, each slice one INSERT … SELECT through the trigger.
    const slice = 20_000;
    for (let v = 1; v <= perAggregate; v++) {
      for (let a0 = 0; a0 < aggregates; a0 += slice) {
        const a1 = Math.min(aggregates, a0 + slice);
        await c.query(
          `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
           SELECT 'user', 'u' || g, 'UserEmailChanged', 1,
                  jsonb_build_object('email', 'user' || g || '-v' || $1::int || '@example.com', 'name', 'Ada Lovelace', 'tags', jsonb_build_array('a', 'ü', g)),
                  'user:' || (g % 97), 'trace-' || g || '-' || $1::int, 'corr-' || g
             FROM generate_series($2::int, $3::int - 1) g`,
          [v, a0, a1],
        );
      }
      process.stderr.write(`filled version ${v}/${perAggregate} (${Math.round((Date.now() - started) / 1000)} s)\n`);
    }
    await c.query('VACUUM ANALYZE outbox');
    return (Date.now() - started) / 1000;
  } finally {
    await c.end();
  }
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; cpu: number; value: T }> {
  const t = process.hrtime.bigint();
  const c = process.cpuUsage();
  const value = await fn();
  const used = process.cpuUsage(c);
  return { seconds: Number(process.hrtime.bigint() - t) / 1e9, cpu: (used.user + used.system) / 1e6, value };
}

/** COPY (…) TO STDOUT whose bytes are only counted: the server's side of verifyChain, and the transfer. */
function copyBytes(c: pg.Client, text: string): Promise<number> {
  let bytes = 0;
  return new Promise<number>((resolve, reject) => {
    let failed: unknown;
    const submittable = {
      submit: (con: { query(t: string): void }) => con.query(text),
      handleCopyData: (msg: { chunk: Buffer }) => void (bytes += msg.chunk.length),
      handleError: (err: unknown) => void (failed ??= err),
      handleReadyForQuery: () => (failed === undefined ? resolve(bytes) : reject(failed as Error)),
      handleCommandComplete: () => undefined,
      handleRowDescription: () => undefined,
      handleDataRow: () => undefined,
      handleEmptyQuery: () => undefined,
    };
    void c.query(submittable as unknown as pg.QueryConfig);
  });
}

async function main(): Promise<void> {
  const events = arg('events', 1_000_000);
  const perAggregate = arg('per-aggregate', 10);
  const runs = arg('runs', 3);
  const base = process.env.DATABASE_URL;
  if (!base) throw new Error('DATABASE_URL is not set (source .stack/env)');
  const reuse = process.env.BENCH_DB;
  const db = reuse ? { name: reuse, url: withSearchPath(withDatabase(base, reuse)), drop: async () => undefined } : await benchDatabase(base, 'bench_audit');
  const load = () =>
    os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ');
  try {
    const fillSeconds = await fill(db.url, events, perAggregate);
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const n = Number((await c.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox')).rows[0]!.n);
    const rows: Array<Record<string, string | number>> = [];
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    const add = (what: string, t: { seconds: number; cpu?: number }, note = '') =>
      rows.push({ what, seconds: t.seconds.toFixed(2), 'events/s': Math.round(n / t.seconds), 'cpu s': t.cpu === undefined ? '' : t.cpu.toFixed(2), load: load(), note });
    const inProcess = async (what: string, fn: () => Promise<{ ok: boolean; checked: number }>) => {
      const t = await timed(fn);
      if (!t.value.ok || t.value.checked !== n) throw new Error(`${what}: ${JSON.stringify(t.value)}`);
      add(what, t);
    };
    for (let r = 0; r < runs; r++) {
      // The command itself, as a separate process (start-up included), against the plain outbox schema.
      const cli = await timed(async () =>
        spawnSync(process.execPath, [path.join(REPO, 'bin', 'outbox.js'), 'audit', 'verify', '--no-kafka', '--json'], {
          cwd: REPO,
          env: { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: withDatabase(base, db.name), OUTBOX_ENV_FILE: '/dev/null' },
          encoding: 'utf8',
          maxBuffer: 64 * 1024 * 1024,
        }),
      );
      const out = JSON.parse(cli.value.stdout) as { ok: boolean; checked: number; eventsPerSecond: number };
      if (!out.ok || out.checked !== n) throw new Error(`verify: ${cli.value.stdout}${cli.value.stderr}`);
      add('outbox audit verify --no-kafka (process wall time)', { seconds: cli.seconds }, `prints ${out.eventsPerSecond} events/s`);
      await inProcess('verifyChain(client): one COPY stream', () => verifyChain(c));
      for (const parallelism of [2, 4]) await inProcess(`verifyChain(pool, { parallelism: ${parallelism} })`, () => verifyChain(pool, { parallelism }));
      await inProcess('previous verifyChain: keyset pages of 5000, text rows', () => previousVerifyChain(c));
      // Baseline 0: the server's side of verifyChain alone (the same COPY, bytes counted, nothing hashed).
      const copied = await timed(() =>
        copyBytes(
          c,
          `COPY (SELECT o.event_id::text, o.aggregate_type, o.aggregate_id, o.aggregate_version::text, o.event_type, o.schema_version::text,
                 CASE WHEN o.occurred_at >= '0001-01-01 00:00:00+00' AND o.occurred_at < '10000-01-01 00:00:00+00' THEN NULL
                      ELSE to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END,
                 o.actor_id, o.trace_id, o.correlation_id, o.causation_id, o.traceparent, o.payload::text, o.prev_hash, o.hash, a.version::text,
                 CASE WHEN a.version = o.aggregate_version THEN a.last_hash END,
                 CASE WHEN o.occurred_at >= '0001-01-01 00:00:00+00' AND o.occurred_at < '10000-01-01 00:00:00+00' THEN o.occurred_at END
            FROM outbox o LEFT JOIN outbox_aggregates a ON a.aggregate_type = o.aggregate_type AND a.aggregate_id = o.aggregate_id
           ORDER BY o.aggregate_type, o.aggregate_id, o.aggregate_version) TO STDOUT (FORMAT binary)`,
        ),
      );
      add('baseline: the same COPY, bytes only counted (no hashing)', copied, `${Math.round(copied.value / 2 ** 20)} MiB`);
      // Baseline 1: only reading the columns verify reads (text forms formatted by SQL), in the same keyset pages of 5000.
      const read = await timed(async () => {
        let after: [string, string, string] | undefined;
        for (;;) {
          const { rows: page } = await c.query<{ aggregate_type: string; aggregate_id: string; v: string }>(
            `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version::text AS v, event_type, schema_version,
                    to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), actor_id, trace_id, correlation_id,
                    causation_id, traceparent, payload::text, prev_hash, hash
               FROM outbox ${after ? 'WHERE (aggregate_type, aggregate_id, aggregate_version) > ($1, $2, $3::bigint)' : ''}
              ORDER BY aggregate_type, aggregate_id, aggregate_version LIMIT 5000`,
            after ?? [],
          );
          const last = page[page.length - 1];
          if (!last || page.length < 5000) break;
          after = [last.aggregate_type, last.aggregate_id, last.v];
        }
      });
      add('baseline: SELECT the same rows in keyset pages of 5000', read);
      // Baseline 2: PostgreSQL recomputing every hash itself (no links, no transfer).
      const inDb = await timed(() =>
        c.query(`SELECT count(*) FILTER (WHERE hash <> sha256(prev_hash || outbox_canonical_encoding(event_id, aggregate_type, aggregate_id, aggregate_version,
                        event_type, schema_version, occurred_at, actor_id, trace_id, correlation_id, causation_id, traceparent, payload))) AS bad FROM outbox`),
      );
      add('baseline: SQL recomputes every hash (one backend)', inDb);
    }
    await c.end();
    await pool.end();
    const result = { events: n, perAggregate, fillSeconds, machine: machine(), rows };
    process.stdout.write(`${new Date().toISOString()}  ${n} events (${perAggregate} per aggregate), filled in ${fillSeconds.toFixed(0)} s\n`);
    process.stdout.write(`${table(rows)}\n`);
    process.stdout.write(`summary: ${writeResult('audit-verify', result)}\n`);
  } finally {
    if (!reuse && process.env.BENCH_KEEP_DB !== '1') await db.drop();
    else process.stderr.write(`kept database ${db.name}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
