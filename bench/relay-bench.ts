/**
 * Relay benchmark, with the naive one-event-at-a-time relay measured in the same run for the ratio.
 *
 *   npx tsx bench/relay-bench.ts [--backlog 200000] [--naive-backlog 5000] [--rate 5000] [--naive-rate 0] [--seconds 20] [--compare-fencing 1]
 *
 * 1. Drain: a backlog of `--backlog` events with 1 KB payloads is written first, then a relay is started
 *    and timed until the backlog is empty (events/s). The naive relay drains `--naive-backlog` events.
 * 2. Latency: writers commit `--rate` events/s for `--seconds`; a consumer reads the topic and measures
 *    commit (COMMIT returned) → message received, p50/p99. The naive relay is measured the same way, at
 *    `--naive-rate` (default 0: half the drain rate it showed in step 1, a load it can sustain — offered
 *    more, its "latency" would be the age of a growing queue).
 * 3. Fencing cost (`--compare-fencing 1`, the default; 0 skips it): one Kafka transaction per batch
 *    with a transactional.id per outbox (OUTBOX_RELAY_TRANSACTIONAL=true, the default: a deposed leader
 *    is fenced) and the idempotent producer alone (OUTBOX_RELAY_TRANSACTIONAL=false) are both measured,
 *    drain and latency, in the same run, alternating. The headline figures (drain, latency) are those of
 *    the idempotent producer, comparable with earlier runs; the transactional row gives the ratio.
 * Uses the stack from .stack/env (or the environment); creates and drops its own databases and topics.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Kafka } from 'kafkajs';
import pg from 'pg';
import { loadConfig, readEnvironment, type OutboxConfig } from '../core/config';
import { createKafka } from '../core/kafka';
import { createLogger } from '../core/logger';
import { startRelay } from '../relay';
import { loadCatalog } from '../schemas/catalog';
import { createEventEncoder } from '../schemas/encode-event';
import { appendEvents, withTransaction, type NewEvent } from '../writer';
import { naiveRelay } from './naive-relay';
import { arg, benchDatabase, machine, percentile, table, writeResult } from './support';

const BACKLOG = arg('backlog', 200_000);
const NAIVE_BACKLOG = arg('naive-backlog', 5_000);
const RATE = arg('rate', 5_000);
const NAIVE_RATE = arg('naive-rate', 0);
const SECONDS = arg('seconds', 20);
const BATCH = arg('batch', 1_000);
const COMPARE_FENCING = process.argv[process.argv.indexOf('--compare-fencing') + 1] !== '0' || !process.argv.includes('--compare-fencing');
const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn' });
const NAME = 'x'.repeat(1_000); // a 1 KB payload

function configFor(url: string, topic: string, transactional = false): OutboxConfig {
  return loadConfig(
    {
      ...readEnvironment(),
      DATABASE_URL: url,
      OUTBOX_TOPIC_MAP: `user=${topic}`,
      OUTBOX_RELAY_BATCH_SIZE: String(BATCH),
      OUTBOX_TOPIC_PARTITIONS: '6',
      OUTBOX_RELAY_POLL_INTERVAL: '1s',
      OUTBOX_RELAY_TRANSACTIONAL: String(transactional),
    },
    { database: true, kafka: true, registry: true },
  );
}

/** Drain a backlog with the kafka-outbox relay; events/s. */
async function drainOnce(base: OutboxConfig, transactional: boolean): Promise<{ eventsPerSecond: number; backlogWriteEventsPerSecond: number }> {
  const db = await benchDatabase(base.databaseUrl, 'bench_relay');
  const pool = new pg.Pool({ connectionString: db.url, max: 6 });
  const topic = `bench-drain-${randomBytes(4).toString('hex')}`;
  const appendRate = await writeBacklog(pool, BACKLOG);
  const relay = startRelay({ config: configFor(db.url, topic, transactional), logger });
  const drain = await timeDrain(pool, BACKLOG);
  await relay.stop();
  await pool.end();
  await db.drop();
  return { eventsPerSecond: Math.round(drain), backlogWriteEventsPerSecond: Math.round(appendRate) };
}

/** Write a backlog server-side in chunks (the insert trigger still runs per row). */
async function writeBacklog(pool: pg.Pool, n: number): Promise<number> {
  const started = Date.now();
  const chunk = 10_000;
  for (let done = 0; done < n; done += chunk) {
    await pool.query(
      `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
       SELECT 'user', 'u' || (g % 2000), 'UserRegistered', 1, jsonb_build_object('email', 'u' || g || '@example.com', 'name', $2::text),
              'bench', md5(g::text), 'req-' || g
         FROM generate_series($1::int, $1::int + $3::int - 1) g`,
      [done, NAME, Math.min(chunk, n - done)],
    );
  }
  return (n / (Date.now() - started)) * 1000;
}

async function backlog(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL');
  return Number(rows[0]!.n);
}

async function timeDrain(pool: pg.Pool, n: number): Promise<number> {
  const started = Date.now();
  while ((await backlog(pool)) > 0) await new Promise((r) => setTimeout(r, 100));
  return (n / (Date.now() - started)) * 1000;
}

/** Paced writers (4 connections); returns commit timestamps by event id. */
async function steadyLoad(pool: pg.Pool, rate: number, seconds: number): Promise<Map<string, number>> {
  const committed = new Map<string, number>();
  const perTx = Math.max(1, Math.round(rate / 200)); // 200 transactions/s in all
  const total = rate * seconds;
  const started = Date.now();
  let next = 0;
  async function writer(w: number): Promise<void> {
    for (;;) {
      const start = next;
      if (start >= total) return;
      next += perTx;
      const due = started + (start / rate) * 1000;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const events: NewEvent[] = Array.from({ length: perTx }, (_, i) => ({
        aggregateType: 'user',
        aggregateId: `s${(start + i) % 500}`,
        eventType: 'UserEmailChanged',
        schemaVersion: 1,
        payload: { email: `s${start + i}@example.com` },
        actorId: `w${w}`,
        traceId: randomBytes(16).toString('hex'),
      }));
      const res = await withTransaction(pool, (c) => appendEvents(c, events));
      const at = Date.now();
      if (res.status === 'appended') for (const e of res.events) committed.set(e.eventId, at);
    }
  }
  await Promise.all([0, 1, 2, 3].map(writer));
  return committed;
}

/** Receive times by event id, from a consumer started before the load. */
async function receiver(kafka: Kafka, topic: string): Promise<{ received: Map<string, number>; stop(): Promise<void> }> {
  const received = new Map<string, number>();
  const consumer = kafka.consumer({ groupId: `bench-${randomBytes(4).toString('hex')}`, maxWaitTimeInMs: 20 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const at = Date.now();
      for (const m of batch.messages) {
        const id = m.headers?.event_id?.toString();
        if (id && !received.has(id)) received.set(id, at);
      }
    },
  });
  return { received, stop: () => consumer.disconnect() };
}

async function latency(committed: Map<string, number>, received: Map<string, number>, waitMs: number): Promise<{ p50: number; p99: number; max: number; missing: number }> {
  const deadline = Date.now() + waitMs;
  while ([...committed.keys()].some((id) => !received.has(id)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const l = [...committed.entries()]
    .filter(([id]) => received.has(id))
    .map(([id, t]) => received.get(id)! - t)
    .sort((a, b) => a - b);
  return { p50: percentile(l, 50), p99: percentile(l, 99), max: l[l.length - 1] ?? NaN, missing: committed.size - l.length };
}

const cellOf = (x: { p50: number; p99: number }): string => `p50 ${x.p50} ms, p99 ${x.p99} ms`;

async function createTopic(kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 6, replicationFactor: 1 }] });
  await admin.disconnect();
}

async function main(): Promise<void> {
  const base = loadConfig(readEnvironment(), { database: true, kafka: true, registry: true });
  const kafka = createKafka(base.kafka, logger);
  const load = (): string =>
    os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ');
  const loadAtStart = load();
  const results: Record<string, unknown> = {
    machine: machine(),
    loadAverageAtStart: loadAtStart,
    backlog: BACKLOG,
    naiveBacklog: NAIVE_BACKLOG,
    rate: RATE,
    seconds: SECONDS,
    batch: BATCH,
  };
  const rows: Array<Record<string, string | number>> = [];
  /** Offered to the naive relay in the latency step: set after its drain (a rate it can sustain). */
  let naiveRate: number | undefined;

  // --- drain: kafka-outbox relay (idempotent producer), and transactional (the default) in the same run, alternating
  const drains: Record<'idempotent' | 'transactional', number[]> = { idempotent: [], transactional: [] };
  for (let round = 0; round < (COMPARE_FENCING ? 2 : 1); round++) {
    const order = !COMPARE_FENCING ? ['idempotent'] : round % 2 === 0 ? ['idempotent', 'transactional'] : ['transactional', 'idempotent'];
    for (const mode of order as Array<'idempotent' | 'transactional'>) {
      const r = await drainOnce(base, mode === 'transactional');
      drains[mode].push(r.eventsPerSecond);
      if (mode === 'idempotent') results.drain = r;
    }
  }
  const best = (xs: number[]): number => Math.max(...xs);
  results.drain = { ...(results.drain as object), eventsPerSecond: best(drains.idempotent), runs: drains.idempotent };
  rows.push({ measure: `drain ${BACKLOG} x 1 KB`, 'kafka-outbox': `${best(drains.idempotent)} ev/s`, naive: '', ratio: '' });
  if (COMPARE_FENCING) {
    results.transactionalDrain = { eventsPerSecond: best(drains.transactional), runs: drains.transactional };
    rows.push({
      measure: `drain, transactional (fenced) producer`,
      'kafka-outbox': `${best(drains.transactional)} ev/s (${(best(drains.transactional) / best(drains.idempotent)).toFixed(2)} of idempotent)`,
      naive: '',
      ratio: '',
    });
  }
  // --- drain: naive relay
  {
    const db = await benchDatabase(base.databaseUrl, 'bench_naive');
    const pool = new pg.Pool({ connectionString: db.url, max: 4 });
    const topic = `bench-naive-${randomBytes(4).toString('hex')}`;
    await createTopic(kafka, topic);
    await writeBacklog(pool, NAIVE_BACKLOG);
    const encoder = createEventEncoder({ registry: base.registry, catalog: loadCatalog(), logger });
    await encoder.prepare();
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const naive = naiveRelay(pool, producer, encoder, topic);
    const drain = await timeDrain(pool, NAIVE_BACKLOG);
    await naive.stop();
    await producer.disconnect();
    const ours = (results.drain as { eventsPerSecond: number }).eventsPerSecond;
    results.naiveDrain = { eventsPerSecond: Math.round(drain) };
    naiveRate = NAIVE_RATE > 0 ? NAIVE_RATE : Math.max(1, Math.floor(drain / 2));
    rows[0]!.naive = `${Math.round(drain)} ev/s (${NAIVE_BACKLOG})`;
    rows[0]!.ratio = `${(ours / drain).toFixed(1)}x`;
    await pool.end();
    await db.drop();
  }
  // --- steady-state latency, ours (idempotent, then transactional), then naive
  for (const which of COMPARE_FENCING ? (['kafka-outbox', 'kafka-outbox-transactional', 'naive'] as const) : (['kafka-outbox', 'naive'] as const)) {
    const db = await benchDatabase(base.databaseUrl, 'bench_latency');
    const pool = new pg.Pool({ connectionString: db.url, max: 8 });
    const topic = `bench-latency-${randomBytes(4).toString('hex')}`;
    await createTopic(kafka, topic);
    const recv = await receiver(kafka, topic);
    let stop: () => Promise<void>;
    let producer: import('kafkajs').Producer | undefined;
    const acked: number[] = [];
    if (which !== 'naive') {
      const relay = startRelay({ config: configFor(db.url, topic, which === 'kafka-outbox-transactional'), logger, observer: { published: (_n, l) => acked.push(...l) } });
      stop = () => relay.stop();
    } else {
      const encoder = createEventEncoder({ registry: base.registry, catalog: loadCatalog(), logger });
      await encoder.prepare();
      producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
      await producer.connect();
      const naive = naiveRelay(pool, producer, encoder, topic);
      stop = () => naive.stop();
    }
    await new Promise((r) => setTimeout(r, 2000)); // relay leader, consumer assignment
    const seconds = SECONDS;
    const rate = which === 'naive' ? (naiveRate ?? RATE) : RATE;
    const committed = await steadyLoad(pool, rate, seconds);
    const lat = await latency(committed, recv.received, which === 'naive' ? 20_000 : 30_000);
    // commit → acknowledged by the broker and recorded (delivered_at is set right after the ack)
    const { rows: delivered } = await pool.query<{ event_id: string; at: string }>(
      `SELECT o.event_id::text, (extract(epoch from d.delivered_at) * 1000)::bigint::text AS at
         FROM outbox_delivery d JOIN outbox o ON o.id = d.id WHERE d.delivered_at IS NOT NULL`,
    );
    const toKafka = delivered
      .filter((r) => committed.has(r.event_id))
      .map((r) => Number(r.at) - committed.get(r.event_id)!)
      .sort((a, b) => a - b);
    const commitToKafka = { p50: percentile(toKafka, 50), p99: percentile(toKafka, 99), delivered: toKafka.length };
    await stop();
    await producer?.disconnect();
    await recv.stop();
    acked.sort((a, b) => a - b);
    const relaySide = { p50: percentile(acked, 50), p99: percentile(acked, 99) };
    results[which === 'naive' ? 'naiveLatency' : which === 'kafka-outbox' ? 'latency' : 'transactionalLatency'] = {
      commitToKafka,
      commitToConsumer: lat,
      events: committed.size,
      seconds,
      rate,
      ...(which !== 'naive' ? { insertToAck: relaySide } : {}),
    };
    if (which === 'kafka-outbox-transactional') {
      rows.push({ measure: `commit→Kafka ack, transactional (fenced)`, 'kafka-outbox': cellOf(commitToKafka), naive: '', ratio: '' });
      rows.push({ measure: `commit→consumer, transactional (fenced)`, 'kafka-outbox': cellOf(lat), naive: '', ratio: '' });
      await pool.end();
      await db.drop();
      continue;
    }
    const cell = (x: { p50: number; p99: number }): string => `p50 ${x.p50} ms, p99 ${x.p99} ms`;
    rows.push(
      {
        measure: `commit→Kafka ack at ${rate} ev/s (${seconds} s)`,
        'kafka-outbox': which === 'kafka-outbox' ? cell(commitToKafka) : '',
        naive: which === 'naive' ? `${cell(commitToKafka)}, ${committed.size - commitToKafka.delivered} not delivered in 20 s` : '',
        ratio: '',
      },
      {
        measure: `commit→consumer at ${rate} ev/s (${seconds} s)`,
        'kafka-outbox': which === 'kafka-outbox' ? cell(lat) : '',
        naive: which === 'naive' ? cell(lat) : '',
        ratio: '',
      },
    );
    await pool.end();
    await db.drop();
  }
  const lat = (results.latency as { commitToKafka: { p99: number } }).commitToKafka;
  const naiveLat = (results.naiveLatency as { commitToKafka: { p99: number } }).commitToKafka;
  rows[rows.length - 2]!.ratio = `p99 naive/ours ${(naiveLat.p99 / lat.p99).toFixed(1)}x (at ${naiveRate ?? RATE} vs ${RATE} ev/s)`;
  results.loadAverageAtEnd = load();
  process.stdout.write(
    `\nrelay benchmark (${new Date().toISOString()}, ${JSON.stringify(machine())}, load average at start ${loadAtStart}, at end ${load()})\n\n${table(rows)}\n\n`,
  );
  process.stdout.write(`targets: drain >= 20000 ev/s; p99 <= 30 ms\nresults: ${writeResult('relay', results)}\n`);
}

main().catch((err) => {
  process.stderr.write(`relay bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
