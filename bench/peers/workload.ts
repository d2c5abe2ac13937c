/**
 * The one workload both systems get: the same rows (aggregate type `user`, 2,000 aggregates, event type
 * UserRegistered v1, a 1 KB payload, actor, trace and correlation ids), written with plain SQL into each
 * system's own outbox table — kafka-outbox's `outbox` (its trigger assigns versions, the hash chain and
 * the delivery row) and Debezium's router-shaped `outbox` in another database of the same cluster.
 */
import type { Kafka } from 'kafkajs';
import pg from 'pg';

export type System = 'kafka-outbox' | 'debezium';
const NAME = 'x'.repeat(1_000); // with the email: about 1 KB of payload
export const AGGREGATES = 2_000;

/** The columns each table names (same values). `g` is the event's sequence number. */
const SELECT_ROWS = `'user', 'u' || (g % ${AGGREGATES}), 'UserRegistered', 1,
       jsonb_build_object('email', 'u' || g || '@example.com', 'name', $2::text), 'bench', md5(g::text), 'req-' || g`;
const COLUMNS: Record<System, string> = {
  'kafka-outbox': 'aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id',
  debezium: 'aggregatetype, aggregateid, type, schema_version, payload, actor_id, trace_id, correlation_id',
};
/** What identifies an event on the topic: our relay's `event_id` header, the router's `id` header. */
export const RETURNING: Record<System, string> = { 'kafka-outbox': 'event_id::text AS id', debezium: 'id::text AS id' };
export const ID_HEADER: Record<System, string> = { 'kafka-outbox': 'event_id', debezium: 'id' };

/** Events g in [from, from + n), one statement, rows in aggregate order (concurrent writers never deadlock). */
function insertSql(system: System, returning: boolean): string {
  return `INSERT INTO outbox (${COLUMNS[system]})
          SELECT ${SELECT_ROWS} FROM generate_series($1::int, $1::int + $3::int - 1) g ORDER BY g % ${AGGREGATES}
          ${returning ? `RETURNING ${RETURNING[system]}` : ''}`;
}

/** Write a backlog of `n` events in chunks of 10,000 (one transaction each); returns events/s written. */
export async function writeBacklog(url: string, system: System, n: number, from = 0): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const started = Date.now();
  try {
    for (let done = 0; done < n; done += 10_000) await c.query(insertSql(system, false), [from + done, NAME, Math.min(10_000, n - done)]);
  } finally {
    await c.end();
  }
  return (n / Math.max(1, Date.now() - started)) * 1000;
}

export interface PacedLoad {
  /** commit time (ms since epoch) by event id */
  committed: Map<string, number>;
  /** events/s the writers achieved */
  achievedRate: number;
  seconds: number;
}

/**
 * Writers on 8 connections commit `rate` events/s for `seconds`, in 100 transactions/s (rate/100 events
 * each); every event's commit time (COMMIT returned) is recorded by its id.
 */
export async function pacedLoad(options: { url: string; system: System; rate: number; seconds: number; from: number }): Promise<PacedLoad> {
  const { rate, seconds, system } = options;
  const pool = new pg.Pool({ connectionString: options.url, max: 8 });
  const committed = new Map<string, number>();
  const perTx = Math.max(1, Math.round(rate / 100));
  const total = rate * seconds;
  const sql = insertSql(system, true);
  const started = Date.now();
  let next = 0;
  async function writer(): Promise<void> {
    const c = await pool.connect();
    try {
      for (;;) {
        const start = next;
        if (start >= total) return;
        const n = Math.min(perTx, total - start);
        next += n;
        const wait = started + (start / rate) * 1000 - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        await c.query('BEGIN');
        const { rows } = await c.query<{ id: string }>(sql, [options.from + start, NAME, n]);
        await c.query('COMMIT');
        const at = Date.now();
        for (const r of rows) committed.set(r.id, at);
      }
    } finally {
      c.release();
    }
  }
  try {
    await Promise.all(Array.from({ length: 8 }, () => writer()));
  } finally {
    await pool.end();
  }
  const elapsed = (Date.now() - started) / 1000;
  return { committed, achievedRate: Math.round(committed.size / elapsed), seconds };
}

/** Sum of the topic's end offsets (records the broker has acknowledged). */
export async function topicRecords(admin: ReturnType<Kafka['admin']>, topic: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
}

export interface Arrival {
  /** broker append time (the topic uses LogAppendTime) */
  appendedAt: number;
  receivedAt: number;
}

/** A consumer that records, by event id, when each message was appended by the broker and received here. */
export async function arrivals(kafka: Kafka, topic: string, system: System): Promise<{ seen: Map<string, Arrival>; stop(): Promise<void> }> {
  const seen = new Map<string, Arrival>();
  const consumer = kafka.consumer({ groupId: `${topic}-latency`, maxWaitTimeInMs: 20 });
  await consumer.connect();
  const joined = new Promise<void>((resolve) => consumer.on(consumer.events.GROUP_JOIN, () => resolve()));
  await consumer.subscribe({ topic, fromBeginning: false });
  const header = ID_HEADER[system];
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const at = Date.now();
      for (const m of batch.messages) {
        const id = m.headers?.[header]?.toString();
        if (id && !seen.has(id)) seen.set(id, { appendedAt: Number(m.timestamp), receivedAt: at });
      }
    },
  });
  await joined;
  await new Promise((r) => setTimeout(r, 1500)); // the group's offsets are resolved (latest) before the load starts
  return { seen, stop: () => consumer.disconnect() };
}
