/**
 * The dual-write baseline: what services write without an outbox — "UPDATE the state row, COMMIT, then
 * producer.send to Kafka" — against kafka-outbox's "UPDATE the state row + INSERT the event in ONE
 * transaction, the relay publishes". Both run the same workload in child processes that are killed -9
 * at the same moments; afterwards the database is compared with the topic read back from the beginning:
 * a state change committed without its message is LOST.
 *
 *   npx tsx bench/dual-write.ts [--seconds 40] [--kills 4] [--concurrency 8] [--rate 400]
 *   npx tsx bench/dual-write.ts --worker dual-write|outbox   (the child; env DATABASE_URL, KAFKA_BROKERS, DW_TOPIC, DW_TABLE)
 *
 * Also exported for the fault suite (test/faults/dual-write.*) and bench/run-all.ts.
 */
import { randomBytes } from 'node:crypto';
import type { Kafka, Producer } from 'kafkajs';
import pg from 'pg';
import { loadConfig, readEnvironment } from '../core/config';
import { createKafka } from '../core/kafka';
import { silentLogger } from '../core/logger';
import { checkDelivery } from '../test/support/delivery-check';
import { readTopics } from '../test/support/kafka';
import { killHard, spawnTs, type Child } from '../test/support/processes';
import { appendEvents } from '../writer';
import { benchDatabase, machine, percentile, table, writeResult, arg } from './support';

export type WriterMode = 'dual-write' | 'outbox';

export async function createStateTable(pool: pg.Pool, table: string, aggregates: number, prefix = 'u'): Promise<void> {
  await pool.query(`CREATE TABLE IF NOT EXISTS ${table} (id text PRIMARY KEY, email text NOT NULL, version bigint NOT NULL DEFAULT 0)`);
  await pool.query(`INSERT INTO ${table} (id, email) SELECT $2 || g, $2 || g || '@example.com' FROM generate_series(0, $1::int - 1) g ON CONFLICT DO NOTHING`, [
    aggregates,
    prefix,
  ]);
}

/**
 * The workload loop (the child process body): `concurrency` request handlers, each changing the email of
 * a random user, paced to `ratePerSec` in all. Returns when `signal` aborts (a killed child never returns).
 * `onCommitted(id, version, ms)` reports the commit → ack latency of dual-write sends.
 */
export async function writeLoop(
  mode: WriterMode,
  pool: pg.Pool,
  producer: Producer | undefined,
  options: {
    topic: string;
    table: string;
    aggregates: number;
    concurrency: number;
    ratePerSec: number;
    prefix?: string;
    signal?: AbortSignal;
    total?: number;
    onAck?: (ms: number) => void;
  },
): Promise<number> {
  const prefix = options.prefix ?? 'u';
  let done = 0;
  let issued = 0;
  const started = Date.now();
  async function handler(): Promise<void> {
    while (!options.signal?.aborted && (options.total === undefined || issued < options.total)) {
      const n = issued++;
      const due = started + (n / options.ratePerSec) * 1000;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      const id = `${prefix}${Math.floor(Math.random() * options.aggregates)}`;
      const email = `${id}.${n}.${randomBytes(3).toString('hex')}@example.com`;
      const client = await pool.connect();
      let version: string;
      try {
        await client.query('BEGIN');
        const r = await client.query<{ version: string }>(`UPDATE ${options.table} SET email = $2, version = version + 1 WHERE id = $1 RETURNING version::text`, [id, email]);
        version = r.rows[0]!.version;
        if (mode === 'outbox') {
          await appendEvents(client, [
            {
              aggregateType: 'user',
              aggregateId: id,
              eventType: 'UserEmailChanged',
              schemaVersion: 1,
              payload: { email },
              actorId: 'bench:dual-write',
              traceId: randomBytes(16).toString('hex'),
            },
          ]);
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
      if (mode === 'dual-write') {
        // The dual write: the state is committed; now tell the world. A crash (or a broker that does
        // not answer) between the COMMIT and the ack loses the message for good.
        const t = Date.now();
        await producer!.send({
          topic: options.topic,
          acks: -1,
          messages: [{ key: id, value: JSON.stringify({ id, email, version }), headers: { aggregate_id: id, aggregate_version: version } }],
        });
        options.onAck?.(Date.now() - t);
      }
      done += 1;
    }
  }
  await Promise.all(Array.from({ length: options.concurrency }, handler));
  return done;
}

export interface LossFigures {
  system: string;
  state_changes_committed: number;
  messages: number;
  lost: number;
  duplicated: number;
  kills: number;
}

/** Dual-write loss: every (id, version) 1..version of the state table must have a message on the topic. */
export async function dualWriteLoss(pool: pg.Pool, kafka: Kafka, topic: string, table: string): Promise<Omit<LossFigures, 'system' | 'kills'>> {
  const { rows } = await pool.query<{ id: string; version: string }>(`SELECT id, version::text FROM ${table}`);
  const messages = await readTopics(kafka, [topic], { timeoutMs: 120_000 });
  const seen = new Map<string, number>();
  for (const m of messages) {
    const k = `${m.message.headers?.aggregate_id?.toString()}/${m.message.headers?.aggregate_version?.toString()}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  let committed = 0;
  let lost = 0;
  for (const r of rows) {
    for (let v = 1; v <= Number(r.version); v++) {
      committed += 1;
      if (!seen.has(`${r.id}/${v}`)) lost += 1;
    }
  }
  return { state_changes_committed: committed, messages: messages.length, lost, duplicated: [...seen.values()].reduce((a, n) => a + n - 1, 0) };
}

/** kafka-outbox under the same crashes: ledger vs topic, plus the state table = the events (atomicity). */
export async function outboxLoss(
  pool: pg.Pool,
  kafka: Kafka,
  topic: string,
  table: string,
): Promise<Omit<LossFigures, 'system' | 'kills'> & { reordered: number; state_without_event: number }> {
  const report = await checkDelivery(pool, kafka, [topic], { timeoutMs: 180_000 });
  const { rows } = await pool.query<{ n: string }>(
    `SELECT coalesce(sum(s.version - coalesce(o.n, 0)), 0)::text AS n FROM ${table} s
       LEFT JOIN (SELECT aggregate_id, count(*) AS n FROM outbox WHERE event_type = 'UserEmailChanged' GROUP BY aggregate_id) o ON o.aggregate_id = s.id`,
  );
  return {
    state_changes_committed: report.committed,
    messages: report.messages,
    lost: report.lost,
    duplicated: report.duplicates,
    reordered: report.reordered,
    state_without_event: Number(rows[0]!.n),
  };
}

export interface CrashRunOptions {
  /** Database for both systems (tables dw_state and ob_state; the outbox tables must be migrated). */
  databaseUrl: string;
  pool: pg.Pool;
  /** Environment of the children (KAFKA_BROKERS, SCHEMA_REGISTRY_URL, relay settings mapping `user` → outboxTopic). */
  env: NodeJS.ProcessEnv;
  kafka: Kafka;
  dualWriteTopic: string;
  outboxTopic: string;
  seconds: number;
  kills: number;
  concurrency?: number;
  ratePerSec?: number;
  aggregates?: number;
  /** Called for every child started (a test tracks and kills leftovers). */
  track?: (c: Child) => void;
}

/**
 * Run both systems side by side for `seconds`, killing -9 at the same moments, `kills` times: the
 * dual-write worker, and kafka-outbox's writer worker and relay. Then let kafka-outbox's relay drain and
 * compare database and topics. Returns one row per system.
 */
export async function crashComparison(o: CrashRunOptions): Promise<{ dualWrite: LossFigures; outbox: LossFigures & { reordered: number; state_without_event: number } }> {
  const aggregates = o.aggregates ?? 200;
  await createStateTable(o.pool, 'dw_state', aggregates);
  await createStateTable(o.pool, 'ob_state', aggregates);
  const admin = o.kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: o.dualWriteTopic, numPartitions: 3, replicationFactor: 1 }] });
  await admin.disconnect();
  const workerEnv = (mode: WriterMode): NodeJS.ProcessEnv => ({
    ...o.env,
    DATABASE_URL: o.databaseUrl,
    DW_TOPIC: mode === 'dual-write' ? o.dualWriteTopic : o.outboxTopic,
    DW_TABLE: mode === 'dual-write' ? 'dw_state' : 'ob_state',
    DW_CONCURRENCY: String(o.concurrency ?? 8),
    DW_RATE: String(o.ratePerSec ?? 400),
    DW_AGGREGATES: String(aggregates),
  });
  const start = async (entry: string, env: NodeJS.ProcessEnv, args: string[], ready: RegExp): Promise<Child> => {
    const c = spawnTs(entry, env, args);
    o.track?.(c);
    await c.waitFor(ready, 90_000);
    return c;
  };
  const startAll = (): Promise<Child[]> =>
    Promise.all([
      start('bench/dual-write.ts', workerEnv('dual-write'), ['--worker', 'dual-write'], /ready/),
      start('bench/dual-write.ts', workerEnv('outbox'), ['--worker', 'outbox'], /ready/),
      start('test/support/relay-process.ts', { ...o.env, DATABASE_URL: o.databaseUrl }, [], /leader/),
    ]);
  let children = await startAll();
  const interval = (o.seconds * 1000) / (o.kills + 1);
  let kills = 0;
  for (let k = 0; k < o.kills; k++) {
    await new Promise((r) => setTimeout(r, interval * (0.6 + Math.random() * 0.8)));
    await Promise.all(children.map(killHard)); // the same crash for both systems
    kills += 1;
    children = await startAll();
  }
  await new Promise((r) => setTimeout(r, interval));
  // Stop the writers for good (kill -9 once more: the last crash), keep the relay to drain.
  await Promise.all(children.slice(0, 2).map(killHard));
  kills += 1;
  const relay = children[2]!;
  try {
    const dualWrite = await dualWriteLoss(o.pool, o.kafka, o.dualWriteTopic, 'dw_state');
    const outbox = await outboxLoss(o.pool, o.kafka, o.outboxTopic, 'ob_state');
    return { dualWrite: { system: 'dual-write (UPDATE, COMMIT, send)', ...dualWrite, kills }, outbox: { system: 'kafka-outbox', ...outbox, kills } };
  } finally {
    await killHard(relay);
  }
}

export function lossTable(r: { dualWrite: LossFigures; outbox: LossFigures }): string {
  return table(
    [r.dualWrite, r.outbox].map((x) => ({
      system: x.system,
      'state changes committed': x.state_changes_committed,
      messages: x.messages,
      lost: x.lost,
      duplicated: x.duplicated,
      'kill -9': x.kills,
    })),
  );
}

/** Throughput and commit→ack latency of dual-write with no crash (for bench ratios). */
export async function dualWriteThroughput(o: {
  pool: pg.Pool;
  kafka: Kafka;
  topic: string;
  seconds: number;
  concurrency: number;
}): Promise<{ eventsPerSecond: number; ackP50Ms: number; ackP99Ms: number }> {
  await createStateTable(o.pool, 'dw_bench', 1000);
  const admin = o.kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: o.topic, numPartitions: 6, replicationFactor: 1 }] });
  await admin.disconnect();
  const producer = o.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const acks: number[] = [];
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(), o.seconds * 1000);
  const n = await writeLoop('dual-write', o.pool, producer, {
    topic: o.topic,
    table: 'dw_bench',
    aggregates: 1000,
    concurrency: o.concurrency,
    ratePerSec: 1e9,
    signal: ac.signal,
    onAck: (ms) => acks.push(ms),
  });
  const secs = (Date.now() - started) / 1000;
  await producer.disconnect();
  acks.sort((a, b) => a - b);
  return { eventsPerSecond: Math.round(n / secs), ackP50Ms: percentile(acks, 50), ackP99Ms: percentile(acks, 99) };
}

/**
 * The same request as the dual write's, done the outbox way with no crash: the state UPDATE and the
 * event INSERT in one transaction (no send: the relay publishes), for a like-for-like write-path ratio.
 */
export async function outboxWriteThroughput(o: { pool: pg.Pool; seconds: number; concurrency: number }): Promise<{ eventsPerSecond: number }> {
  await createStateTable(o.pool, 'ob_bench', 1000);
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort(), o.seconds * 1000);
  const n = await writeLoop('outbox', o.pool, undefined, { topic: '', table: 'ob_bench', aggregates: 1000, concurrency: o.concurrency, ratePerSec: 1e9, signal: ac.signal });
  return { eventsPerSecond: Math.round(n / ((Date.now() - started) / 1000)) };
}

async function worker(mode: WriterMode): Promise<void> {
  const env = process.env;
  const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: Number(env.DW_CONCURRENCY ?? 8) });
  pool.on('error', () => undefined);
  let producer: Producer | undefined;
  if (mode === 'dual-write') {
    const config = loadConfig({ ...env, OUTBOX_ENV_FILE: env.OUTBOX_ENV_FILE ?? '/dev/null' }, { kafka: true });
    producer = createKafka(config.kafka, silentLogger(), 'dual-write').producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
  }
  process.stdout.write('ready\n');
  await writeLoop(mode, pool, producer, {
    topic: env.DW_TOPIC!,
    table: env.DW_TABLE!,
    aggregates: Number(env.DW_AGGREGATES ?? 200),
    concurrency: Number(env.DW_CONCURRENCY ?? 8),
    ratePerSec: Number(env.DW_RATE ?? 400),
  });
}

/** The standalone bench: crash comparison + crash-free throughput, one table, JSON in bench/results/. */
export async function run(options: { seconds?: number; kills?: number; concurrency?: number; rate?: number; throughputSeconds?: number } = {}): Promise<Record<string, unknown>> {
  const env = readEnvironment();
  const base = loadConfig(env, { database: true, kafka: true, registry: true });
  const kafka = createKafka(base.kafka, silentLogger());
  const db = await benchDatabase(base.databaseUrl, 'bench_dualwrite');
  const pool = new pg.Pool({ connectionString: db.url, max: 10 });
  pool.on('error', () => undefined);
  const tag = randomBytes(4).toString('hex');
  const children: Child[] = [];
  try {
    const outboxTopic = `bench-ob-${tag}`;
    const childEnv: NodeJS.ProcessEnv = {
      ...process.env,
      ...env,
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
      OUTBOX_ENV_FILE: '/dev/null',
      OUTBOX_TOPIC_MAP: `user=${outboxTopic}`,
      OUTBOX_TOPIC_SUFFIX: `.${outboxTopic}`,
      OUTBOX_TOPIC_PARTITIONS: '3',
      OUTBOX_RELAY_POLL_INTERVAL: '200ms',
      LOG_LEVEL: 'error',
    };
    const crash = await crashComparison({
      databaseUrl: db.url,
      pool,
      env: childEnv,
      kafka,
      dualWriteTopic: `bench-dw-${tag}`,
      outboxTopic,
      seconds: options.seconds ?? 40,
      kills: options.kills ?? 4,
      concurrency: options.concurrency ?? 8,
      ratePerSec: options.rate ?? 400,
      track: (c) => children.push(c),
    });
    const throughput = await dualWriteThroughput({ pool, kafka, topic: `bench-dwt-${tag}`, seconds: options.throughputSeconds ?? 10, concurrency: 4 });
    const outboxThroughput = await outboxWriteThroughput({ pool, seconds: options.throughputSeconds ?? 10, concurrency: 4 });
    return { crash, throughput, outboxThroughput };
  } finally {
    for (const c of children) await killHard(c);
    await pool.end();
    await db.drop();
  }
}

if (require.main === module) {
  const w = process.argv.indexOf('--worker');
  if (w >= 0) {
    worker(process.argv[w + 1] as WriterMode).catch((err: unknown) => {
      process.stderr.write(`dual-write worker failed: ${String((err as Error)?.stack ?? err)}\n`);
      process.exit(1);
    });
  } else {
    run({ seconds: arg('seconds', 40), kills: arg('kills', 4), concurrency: arg('concurrency', 8), rate: arg('rate', 400) })
      .then((r) => {
        const crash = r.crash as { dualWrite: LossFigures; outbox: LossFigures };
        process.stdout.write(`\ndual-write vs kafka-outbox under the same kill -9 (${JSON.stringify(machine())})\n\n${lossTable(crash)}\n\n`);
        process.stdout.write(`dual-write without crashes: ${JSON.stringify(r.throughput)}\nresults: ${writeResult('dual-write', { machine: machine(), ...r })}\n`);
      })
      .catch((err: unknown) => {
        process.stderr.write(`dual-write bench failed: ${String((err as Error)?.stack ?? err)}\n`);
        process.exit(1);
      });
  }
}
