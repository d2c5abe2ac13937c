/**
 * Projector benchmark (real stack): npx tsx bench/projector-bench.ts [--rebuild-events 50000] [--rate 5000] [--seconds 10] [--warmup 2] [--concurrency 6]
 *  1. loadAggregate of a 5,000-event aggregate: from its snapshot vs full replay (same run).
 *  2. rebuild throughput (events/s) of `users` from offset 0, then of `audit_log` over the same topic.
 *  3. Kafka -> read model latency p50/p99 at a target rate, with audit_log and the example's projections
 *     (users) running together: from the broker's acknowledgement of each record to its audit_log row
 *     (projected_at), beside event -> ack (the bench's own producing side) and event -> read model;
 *     events produced straight to Kafka, one send in flight. The producing side runs in a child process
 *     (in the projector's process its generator, hashing and encoding took about a quarter of a core
 *     from the projector being measured); `--warmup` seconds of events at the same rate are projected
 *     first (connections, registry look-ups, JIT) and left out of the figures.
 * Uses a database of its own (migrated, dropped at the end) and unique topics.
 * Profiling: `PROJECTOR_BENCH_MARKS=1 npx tsx --cpu-prof bench/projector-bench.ts` also writes each
 * phase's start to stderr (`mark <phase> <µs>`, the monotonic clock of the profile's samples), to cut
 * the profile of the projector's process by phase.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { loadConfig, readEnvironment } from '../core/config';
import { createKafka } from '../core/kafka';
import { silentLogger } from '../core/logger';
import { migrate } from '../infra/migrate';
import { builtInProjections, createAuditLogProjection, loadAggregate, rebuildProjection, startProjector } from '../projector';
import { createUsersProjection } from '../examples/users-service/projections/users';
import { createTopics } from '../test/support/kafka';
import { loadCatalog } from '../schemas/catalog';
import { createEventEncoder } from '../schemas/encode-event';
import { canonicalJsonb, computeHash, ZERO_HASH } from '../event';
import type { OutboxEventForEncoding } from '../schemas/encode-event';
import { percentile, withSearchPath } from './support';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : def;
};

/** Phase boundaries on stderr (monotonic µs, the clock of a --cpu-prof profile), to cut a profile by phase. */
const mark = (phase: string): void => {
  if (process.env.PROJECTOR_BENCH_MARKS) process.stderr.write(`mark ${phase} ${process.hrtime.bigint() / 1000n}\n`);
};

const heads = new Map<string, { v: number; h: Buffer }>();
function userEvent(id: string, at: Date): OutboxEventForEncoding & { payload: Record<string, unknown> } {
  const head = heads.get(id) ?? { v: 0, h: ZERO_HASH };
  const v = head.v + 1;
  const [eventType, payload] = v === 1 ? ['UserRegistered', { email: `${id}@example.com`, name: `A ${id}` }] : ['UserRenamed', { first_name: `F${v}`, last_name: id }];
  const e = {
    eventId: crypto.randomUUID(),
    eventType: eventType as string,
    schemaVersion: v === 1 ? 1 : 2,
    aggregateType: 'user',
    aggregateId: id,
    aggregateVersion: v,
    occurredAt: at,
    actorId: 'bench',
    traceId: 'bench',
    correlationId: null,
    causationId: null,
    traceparent: null,
    prevHash: head.h,
    payload: payload as Record<string, unknown>,
  };
  const hash = computeHash(head.h, { ...e, payload: canonicalJsonb(e.payload) });
  heads.set(id, { v, h: hash });
  return { ...e, hash };
}

async function main(): Promise<void> {
  const env = readEnvironment();
  const base = loadConfig(env, { database: true, kafka: true, registry: true });
  const logger = silentLogger();
  const dbName = `bench_projector_${randomBytes(4).toString('hex')}`;
  const adminUrl = new URL(base.databaseUrl);
  adminUrl.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: adminUrl.toString() });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${dbName}"`);
  const dbUrl = new URL(base.databaseUrl);
  dbUrl.pathname = `/${dbName}`;
  const config = loadConfig({ ...env, DATABASE_URL: withSearchPath(dbUrl.toString()), OUTBOX_SNAPSHOT_EVERY: '100' }, { database: true, kafka: true, registry: true });
  const pool = new pg.Pool({ connectionString: config.databaseUrl, max: 20 });
  pool.on('error', () => undefined);
  const results: Record<string, unknown> = {};
  try {
    const c = await pool.connect();
    await migrate(c, { schema: config.schema, projectorSchema: config.projector.schema, logger });
    c.release();
    const kafka = createKafka(config.kafka, logger);
    const ns = `bench${randomBytes(3).toString('hex')}`;
    const catalog = loadCatalog(undefined, { namespace: ns });
    const encoder = createEventEncoder({ registry: config.registry, catalog, logger });
    await encoder.prepare();
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const send = async (topic: string, events: ReturnType<typeof userEvent>[]): Promise<void> => {
      for (let i = 0; i < events.length; i += 2000) {
        const messages = [];
        for (const e of events.slice(i, i + 2000)) {
          const r = await encoder.encode(e);
          if (!r.ok) throw new Error(r.reason);
          messages.push({ key: e.aggregateId, value: r.value });
        }
        await producer.send({ topic, acks: -1, messages });
      }
    };
    const countAudit = async (): Promise<number> => (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]!.n;
    const waitAudit = async (n: number): Promise<void> => {
      while ((await countAudit()) < n) await new Promise((r) => setTimeout(r, 100));
    };

    // 1. loadAggregate: 5,000 events of one aggregate, projected with snapshots every 100.
    const topicA = `bench_agg_${ns}`;
    await createTopics(kafka, [topicA], 1);
    const now = new Date();
    await send(
      topicA,
      Array.from({ length: 5000 }, () => userEvent('big', now)),
    );
    const p1 = await startProjector({
      config,
      logger,
      pool,
      catalog,
      projections: ({ catalog: cat }) => builtInProjections(config, { catalog: cat, topics: [topicA] }),
      groupIdPrefix: `b1${ns}`,
      sessionTimeoutMs: 6000,
    });
    await waitAudit(5000);
    await p1.stop();
    const time = async (runs: number, fn: () => Promise<unknown>): Promise<{ p50: number; min: number }> => {
      const t: number[] = [];
      for (let i = 0; i < runs; i++) {
        const s = process.hrtime.bigint();
        await fn();
        t.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
      t.sort((a, b) => a - b);
      return { p50: +percentile(t, 50).toFixed(2), min: +t[0]!.toFixed(2) };
    };
    const snap = await loadAggregate(pool, 'user', 'big');
    const full = await loadAggregate(pool, 'user', 'big', { useSnapshots: false });
    const canon = (v: unknown): string =>
      JSON.stringify(v, (_k, x: unknown) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as object).sort()) : x));
    if (canon(snap.state) !== canon(full.state)) throw new Error('snapshot state differs from full replay');
    results.loadAggregate = {
      events: full.eventsReplayed,
      withSnapshotMs: await time(50, () => loadAggregate(pool, 'user', 'big')),
      snapshotVersion: snap.snapshotVersion,
      fullReplayMs: await time(20, () => loadAggregate(pool, 'user', 'big', { useSnapshots: false })),
    };
    console.log(JSON.stringify({ loadAggregate: results.loadAggregate }));

    // 2. rebuild throughput of `users` from offset 0.
    const n = arg('rebuild-events', 50_000);
    const topicB = `bench_rebuild_${ns}`;
    await createTopics(kafka, [topicB], 6);
    const evs: ReturnType<typeof userEvent>[] = [];
    for (let v = 0; v < 50; v++) for (let u = 0; u < n / 50; u++) evs.push(userEvent(`r${u}`, now));
    await send(topicB, evs);
    mark('rebuild-users');
    const r = await rebuildProjection({ config, logger, pool, catalog, projection: createUsersProjection({ topics: [topicB] }), groupIdPrefix: `b2${ns}` });
    results.rebuild = { events: r.events, seconds: +r.seconds.toFixed(2), eventsPerSecond: r.eventsPerSecond };
    mark('rebuild-audit');
    const ra = await rebuildProjection({ config, logger, pool, catalog, projection: createAuditLogProjection({ topics: [topicB], catalog }), groupIdPrefix: `b2a${ns}` });
    mark('rebuild-end');
    results.rebuildAuditLog = { events: ra.events, seconds: +ra.seconds.toFixed(2), eventsPerSecond: ra.eventsPerSecond };
    console.log(JSON.stringify({ rebuild: results.rebuild, rebuildAuditLog: results.rebuildAuditLog }));

    // 3. produce -> read model latency at a target rate. The producing side (event generation with its
    // hash chain, Avro encoding, the producer) runs in a child process: in this process it took about a
    // quarter of a core from the projector it measures. A warm-up at the same rate is projected first
    // (connections, registry look-ups, JIT) and left out of the figures.
    const rate = arg('rate', 5000);
    const seconds = arg('seconds', 10);
    const warmupSeconds = arg('warmup', 2);
    const topicC = `bench_latency_${ns}`;
    await createTopics(kafka, [topicC], 6);
    const p3 = await startProjector({
      config,
      logger,
      pool,
      catalog,
      projections: ({ catalog: cat }) => builtInProjections(config, { catalog: cat, topics: [topicC] }),
      groupIdPrefix: `b3${ns}`,
      sessionTimeoutMs: 6000,
      partitionsConsumedConcurrently: arg('concurrency', 6),
    });
    await new Promise((res) => setTimeout(res, 6000)); // group joined
    const baseCount = await countAudit();
    const child = fork(__filename, ['--producer-child'], { execArgv: process.execArgv, env: { ...process.env, DATABASE_URL: config.databaseUrl } });
    const fromChild = <T extends ChildMessage['type']>(type: T): Promise<Extract<ChildMessage, { type: T }>> =>
      new Promise((res, rej) => {
        const onMessage = (m: ChildMessage): void => {
          if (m.type !== type) return;
          child.off('message', onMessage);
          child.off('exit', onExit);
          res(m as Extract<ChildMessage, { type: T }>);
        };
        const onExit = (code: number | null): void => rej(new Error(`the producing child exited (${code}) before "${type}"`));
        child.on('message', onMessage);
        child.once('exit', onExit);
      });
    const order: ParentOrder = { topic: topicC, namespace: ns, rate, seconds, warmupSeconds };
    child.send(order);
    const warmed = await fromChild('warmed');
    await waitAudit(baseCount + warmed.events);
    mark('latency');
    child.send({ measure: true });
    const measured = await fromChild('done');
    const ackedAt = new Map(measured.acks);
    const sent = measured.events;
    const achieved = measured.achievedRate;
    await waitAudit(baseCount + warmed.events + sent);
    mark('latency-end');
    await p3.stop();
    const rows = await pool.query<{ event_id: string; occurred_ms: string; projected_ms: string }>(
      `SELECT event_id, (extract(epoch FROM occurred_at) * 1000)::text AS occurred_ms, (extract(epoch FROM projected_at) * 1000)::text AS projected_ms FROM audit_log WHERE topic = $1`,
      [topicC],
    );
    const total: number[] = [];
    const producing: number[] = [];
    const projecting: number[] = [];
    for (const r of rows.rows) {
      const acked = ackedAt.get(r.event_id);
      if (acked === undefined) continue; // warm-up
      const occurred = Number(r.occurred_ms);
      const projected = Number(r.projected_ms);
      total.push(projected - occurred);
      producing.push(acked - occurred);
      // The consumer may read a record before the producer has the broker's answer: 0 then.
      projecting.push(Math.max(0, projected - acked));
    }
    const figures = (xs: number[]): { p50Ms: number; p99Ms: number; maxMs: number } => {
      xs.sort((a, b) => a - b);
      return { p50Ms: +percentile(xs, 50).toFixed(1), p99Ms: +percentile(xs, 99).toFixed(1), maxMs: +(xs[xs.length - 1] ?? 0).toFixed(1) };
    };
    results.latency = {
      targetRate: rate,
      achievedRate: Math.round(achieved),
      warmupEvents: warmed.events,
      events: sent,
      // Kafka → read model: from the broker's acknowledgement of the record to its audit_log row.
      ...figures(projecting),
      eventToAck: figures(producing),
      eventToReadModel: figures(total),
    };
    console.log(JSON.stringify({ latency: results.latency }));
    await producer.disconnect();
    const admin2 = kafka.admin();
    await admin2.connect();
    await admin2.deleteTopics({ topics: [topicA, topicB, topicC, `${topicA}.dlq`, `${topicB}.dlq`, `${topicC}.dlq`] }).catch(() => undefined);
    await admin2.disconnect();
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
    await admin.end();
  }
  console.log(JSON.stringify({ projectorBench: results }, null, 2));
}

/** What the parent sends the producing child first; then `{ measure: true }` once the warm-up is projected. */
interface ParentOrder {
  topic: string;
  namespace: string;
  rate: number;
  seconds: number;
  warmupSeconds: number;
}
type ChildMessage = { type: 'warmed'; events: number } | { type: 'done'; events: number; achievedRate: number; acks: [string, number][] };

/**
 * The producing side of step 3, in a process of its own: events of 2,000 users at `rate` for `seconds`
 * (after `warmupSeconds` of the same), one send in flight at a time (concurrent send() on one idempotent
 * producer can lose messages): the generator queues encoded events; the sender takes everything queued,
 * sends it and records when the broker acknowledged each event. So the latency splits into event → broker
 * ack (the producing side) and broker ack → read model (the projector).
 */
async function producerChild(): Promise<void> {
  const send = (m: ChildMessage): Promise<void> => new Promise((res, rej) => process.send!(m, (err: Error | null) => (err ? rej(err) : res())));
  const next = (): Promise<unknown> => new Promise((res) => process.once('message', res));
  const order = (await next()) as ParentOrder;
  const config = loadConfig(readEnvironment(), { kafka: true, registry: true });
  const logger = silentLogger();
  const catalog = loadCatalog(undefined, { namespace: order.namespace });
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger });
  await encoder.prepare();
  const producer = createKafka(config.kafka, logger).producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const tickMs = 20;
  const perTick = Math.round((order.rate * tickMs) / 1000);
  let users = 0;
  const run = async (seconds: number): Promise<{ events: number; achievedRate: number; acks: [string, number][] }> => {
    const queue: { key: string; value: Buffer; eventId: string }[] = [];
    const acks: [string, number][] = [];
    let generating = true;
    const sender = (async () => {
      while (generating || queue.length > 0) {
        if (queue.length === 0) {
          await new Promise((res) => setTimeout(res, 2));
          continue;
        }
        const batch = queue.splice(0, queue.length);
        await producer.send({ topic: order.topic, acks: -1, messages: batch.map(({ key, value }) => ({ key, value })) });
        const at = Date.now();
        for (const m of batch) acks.push([m.eventId, at]);
      }
    })();
    const t0 = Date.now();
    let sent = 0;
    while (Date.now() - t0 < seconds * 1000) {
      const at = new Date();
      for (let i = 0; i < perTick; i++) {
        const e = userEvent(`l${users++ % 2000}`, at);
        const enc = await encoder.encode(e);
        if (!enc.ok) throw new Error(enc.reason);
        queue.push({ key: e.aggregateId, value: enc.value, eventId: e.eventId });
      }
      sent += perTick;
      const wait = t0 + (sent / order.rate) * 1000 - Date.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
    }
    const achievedRate = sent / ((Date.now() - t0) / 1000);
    generating = false;
    await sender;
    return { events: sent, achievedRate, acks };
  };
  const warm = await run(order.warmupSeconds);
  await send({ type: 'warmed', events: warm.events });
  await next();
  const measured = await run(order.seconds);
  await send({ type: 'done', ...measured });
  await producer.disconnect();
  process.disconnect();
}

(process.argv.includes('--producer-child') ? producerChild() : main()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
