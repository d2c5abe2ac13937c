/**
 * Projector benchmark (real stack): npx tsx bench/projector-bench.ts [--rebuild-events 50000] [--rate 5000] [--seconds 10]
 *  1. loadAggregate of a 5,000-event aggregate: from its snapshot vs full replay (same run).
 *  2. rebuild throughput (events/s) of `users` from offset 0.
 *  3. Kafka -> read model latency p50/p99 at a target rate: from the broker's acknowledgement of each
 *     record to its audit_log row (projected_at), beside event -> ack (the bench's own producing side) and
 *     event -> read model; events produced straight to Kafka, one send in flight.
 * Uses a database of its own (migrated, dropped at the end) and unique topics.
 */
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
    const r = await rebuildProjection({ config, logger, pool, catalog, projection: createUsersProjection({ topics: [topicB] }), groupIdPrefix: `b2${ns}` });
    results.rebuild = { events: r.events, seconds: +r.seconds.toFixed(2), eventsPerSecond: r.eventsPerSecond };
    const ra = await rebuildProjection({ config, logger, pool, catalog, projection: createAuditLogProjection({ topics: [topicB], catalog }), groupIdPrefix: `b2a${ns}` });
    results.rebuildAuditLog = { events: ra.events, seconds: +ra.seconds.toFixed(2), eventsPerSecond: ra.eventsPerSecond };
    console.log(JSON.stringify({ rebuild: results.rebuild, rebuildAuditLog: results.rebuildAuditLog }));

    // 3. produce -> read model latency at a target rate.
    const rate = arg('rate', 5000);
    const seconds = arg('seconds', 10);
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
    // One send in flight at a time (concurrent send() on one idempotent producer can lose messages): the
    // generator queues encoded events; the sender takes everything queued and sends it, and records when
    // the broker acknowledged each event. So the latency splits into event → broker ack (the producing
    // side, the bench's own) and broker ack → read model (the projector).
    const tickMs = 20;
    const perTick = Math.round((rate * tickMs) / 1000);
    const queue: { key: string; value: Buffer; eventId: string }[] = [];
    const ackedAt = new Map<string, number>();
    let generating = true;
    const sender = (async () => {
      while (generating || queue.length > 0) {
        if (queue.length === 0) {
          await new Promise((res) => setTimeout(res, 2));
          continue;
        }
        const batch = queue.splice(0, queue.length);
        await producer.send({ topic: topicC, acks: -1, messages: batch.map(({ key, value }) => ({ key, value })) });
        const at = Date.now();
        for (const m of batch) ackedAt.set(m.eventId, at);
      }
    })();
    const t0 = Date.now();
    let sent = 0;
    let users = 0;
    while (Date.now() - t0 < seconds * 1000) {
      const at = new Date();
      for (const e of Array.from({ length: perTick }, () => userEvent(`l${users++ % 2000}`, at))) {
        const enc = await encoder.encode(e);
        if (!enc.ok) throw new Error(enc.reason);
        queue.push({ key: e.aggregateId, value: enc.value, eventId: e.eventId });
      }
      sent += perTick;
      const next = t0 + (sent / rate) * 1000;
      const wait = next - Date.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
    }
    const achieved = sent / ((Date.now() - t0) / 1000);
    generating = false;
    await sender;
    await waitAudit(baseCount + sent);
    await p3.stop();
    const rows = await pool.query<{ event_id: string; occurred_ms: string; projected_ms: string }>(
      `SELECT event_id, (extract(epoch FROM occurred_at) * 1000)::text AS occurred_ms, (extract(epoch FROM projected_at) * 1000)::text AS projected_ms FROM audit_log WHERE topic = $1`,
      [topicC],
    );
    const total: number[] = [];
    const producing: number[] = [];
    const projecting: number[] = [];
    for (const r of rows.rows) {
      const occurred = Number(r.occurred_ms);
      const projected = Number(r.projected_ms);
      const acked = ackedAt.get(r.event_id) ?? occurred;
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

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
