/**
 * Drain with sharded, active-active relays (OUTBOX_RELAY_SHARDED): 1, 2 and 4 relay processes, each
 * publishing its share of the queue's shards, against the single leader relay measured in the same run.
 *
 *   npx tsx bench/drain-shards.ts [--backlog 100000] [--instances 1,2,4] [--transactional 0|1] [--batch 1000]
 *
 * For each configuration: a fresh migrated database (32 shards), N relays started as separate
 * processes (`bin/outbox.js relay`) and waited for until they share the shards, then a backlog of
 * `--backlog` events with 1 KB payloads over 2000 aggregates committed in one transaction (so it
 * appears at once), and the time from that commit until the backlog is empty (events/s). The machine's
 * load (`uptime`) is printed before and after: on a shared box the figures move with it.
 * Uses the stack from .stack/env (or the environment); creates and drops its own databases and topics.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, readEnvironment } from '../core/config';
import { readShardOwners } from '../relay';
import { arg, benchDatabase, machine, table, writeResult } from './support';

const ROOT = path.join(__dirname, '..');
const BACKLOG = arg('backlog', 100_000);
const BATCH = arg('batch', 1_000);
const INSTANCES = (process.argv[process.argv.indexOf('--instances') + 1] ?? '1,2,4')
  .split(',')
  .map(Number)
  .filter((n) => n > 0);
const TRANSACTIONAL = process.argv.includes('--transactional') ? process.argv[process.argv.indexOf('--transactional') + 1] === '1' : false;
const NAME = 'x'.repeat(1_000);

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const uptime = (): string => execFileSync('uptime', { encoding: 'utf8' }).trim();

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function backlog(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL');
  return Number(rows[0]!.n);
}

/** N relays (sharded, or one classic leader when `sharded` is false), a backlog at once, the drain rate. */
async function drain(instances: number, sharded: boolean): Promise<{ eventsPerSecond: number; seconds: number }> {
  const base = loadConfig(readEnvironment(), { database: true, kafka: true, registry: true });
  const db = await benchDatabase(base.databaseUrl, 'bench_shards');
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  const run = `bench-shards-${randomBytes(4).toString('hex')}`;
  const relays: ChildProcess[] = [];
  try {
    for (let i = 0; i < instances; i++) {
      const child = spawn(process.execPath, [path.join(ROOT, 'bin/outbox.js'), 'relay'], {
        cwd: ROOT,
        env: {
          ...process.env,
          DATABASE_URL: db.url,
          OUTBOX_TOPIC_MAP: `user=${run}`,
          OUTBOX_TOPIC_SUFFIX: `.${run}`,
          OUTBOX_TOPIC_PARTITIONS: '12',
          OUTBOX_RELAY_BATCH_SIZE: String(BATCH),
          OUTBOX_RELAY_POLL_INTERVAL: '200ms',
          OUTBOX_RELAY_SHARDED: String(sharded),
          OUTBOX_RELAY_TRANSACTIONAL: String(TRANSACTIONAL),
          OUTBOX_INSTANCE_ID: `${run}-${i}`,
          OUTBOX_ADMIN_PORT: '0',
          OUTBOX_ENV_FILE: '/dev/null',
          LOG_LEVEL: 'warn',
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      relays.push(child);
    }
    if (sharded) {
      await until(`${instances} relays sharing the shards`, async () => {
        const r = await readShardOwners(pool, 'outbox');
        return r.unowned.length === 0 && r.owners.length === instances;
      });
    } else {
      await until('the leader', async () => {
        const { rows } = await pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'kafka-outbox-relay-leader'");
        return rows.length > 0;
      });
    }
    // Topics exist once a first event went through: a warm-up event, so creating the topic is not timed.
    await pool.query(`INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
                      VALUES ('user', 'warmup', 'UserRegistered', 1, jsonb_build_object('email', 'w@example.com', 'name', 'w'), 'bench', md5('w'))`);
    await until('the warm-up event', async () => (await backlog(pool)) === 0);
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      for (let done = 0; done < BACKLOG; done += 10_000) {
        await client.query(
          `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
           SELECT 'user', 'u' || (g % 2000), 'UserRegistered', 1, jsonb_build_object('email', 'u' || g || '@example.com', 'name', $2::text),
                  'bench', md5(g::text), 'req-' || g
             FROM generate_series($1::int, $1::int + $3::int - 1) g`,
          [done, NAME, Math.min(10_000, BACKLOG - done)],
        );
      }
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    const started = Date.now();
    await until('the backlog to drain', async () => (await backlog(pool)) === 0, 30 * 60_000);
    const seconds = (Date.now() - started) / 1000;
    return { eventsPerSecond: Math.round(BACKLOG / seconds), seconds: Math.round(seconds * 10) / 10 };
  } finally {
    for (const r of relays) if (r.exitCode === null) r.kill('SIGTERM');
    await Promise.all(relays.map((r) => (r.exitCode === null ? new Promise((res) => r.on('exit', res)) : undefined)));
    await pool.end();
    await db.drop();
  }
}

async function main(): Promise<void> {
  const before = uptime();
  say(`drain-shards: backlog ${BACKLOG} x 1 KB, batch ${BATCH}, transactional ${TRANSACTIONAL}; ${before}`);
  const rows: Array<Record<string, string | number>> = [];
  const leader = await drain(1, false);
  rows.push({ relays: 'leader (not sharded)', instances: 1, seconds: leader.seconds, 'events/s': leader.eventsPerSecond, 'vs leader': '1.00' });
  say(table(rows.slice(-1)));
  for (const n of INSTANCES) {
    const r = await drain(n, true);
    rows.push({ relays: 'sharded', instances: n, seconds: r.seconds, 'events/s': r.eventsPerSecond, 'vs leader': (r.eventsPerSecond / leader.eventsPerSecond).toFixed(2) });
    say(table(rows.slice(-1)));
  }
  const after = uptime();
  say(`\n${table(rows)}\nload before: ${before}\nload after:  ${after}`);
  const file = writeResult('drain-shards', { machine: machine(), backlog: BACKLOG, batch: BATCH, transactional: TRANSACTIONAL, rows, loadBefore: before, loadAfter: after });
  say(`written to ${path.relative(ROOT, file)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
