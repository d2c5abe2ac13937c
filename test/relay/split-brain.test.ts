import net from 'node:net';
import type { Kafka } from 'kafkajs';
import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { startRelay, type RelayHandle } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { relayConfig } from '../support/relay-env';
import { writeWorkload } from '../support/workload';

// Relay A reaches PostgreSQL through a TCP proxy. Its leader-lock connection goes silent (the proxy
// forwards nothing more, either way) and its backend is terminated: PostgreSQL drops A's lock, and
// relay B takes over. A is never told. It must notice by itself (the lock check before each claim) and
// step down, and the broker must refuse anything A still sends (the transactional producer is fenced
// by B's). The evidence is on the topic: once B's producer has written to the partition, no record of
// another producer (id, epoch) follows it.
const db = useTestDatabase({ poolSize: 10 });
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const relays: RelayHandle[] = [];
let proxy: PgProxy | undefined;

afterAll(async () => {
  for (const r of relays) await r.stop();
  await proxy?.close();
});

interface ProxiedConnection {
  client: net.Socket;
  upstream: net.Socket;
  applicationName: string;
  silenced: boolean;
}

/** A TCP proxy in front of PostgreSQL that can silence chosen connections (nothing forwarded, nothing closed). */
class PgProxy {
  readonly connections: ProxiedConnection[] = [];
  private readonly server: net.Server;

  private constructor(target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      const c: ProxiedConnection = { client, upstream, applicationName: '', silenced: false };
      this.connections.push(c);
      let first = true;
      client.on('data', (d: Buffer) => {
        if (first) {
          first = false;
          // The startup message carries application_name in clear (no TLS to a local server).
          const m = /application_name\0([^\0]*)\0/.exec(d.toString('latin1'));
          c.applicationName = m?.[1] ?? '';
        }
        if (!c.silenced) upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => {
        if (!c.silenced) client.write(d);
      });
      const closeBoth = (): void => {
        if (c.silenced) return; // a silenced connection stays open on the client's side
        client.destroy();
        upstream.destroy();
      };
      client.on('close', closeBoth);
      upstream.on('close', closeBoth);
      client.on('error', () => undefined);
      upstream.on('error', () => undefined);
    });
  }

  static async start(target: { host: string; port: number }): Promise<{ proxy: PgProxy; port: number }> {
    const proxy = new PgProxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return { proxy, port: (proxy.server.address() as net.AddressInfo).port };
  }

  async close(): Promise<void> {
    for (const c of this.connections) {
      c.client.destroy();
      c.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface TopicRecord {
  partition: number;
  offset: bigint;
  eventId: string;
  producer: string; // "<producer id>/<epoch>"
}

/** Every committed record of the topic with the producer id and epoch of its record batch. */
async function readWithProducers(kafka: Kafka, topic: string): Promise<TopicRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const high = new Map<number, bigint>();
  try {
    for (const p of await admin.fetchTopicOffsets(topic)) high.set(p.partition, BigInt(p.high));
  } finally {
    await admin.disconnect();
  }
  const records: TopicRecord[] = [];
  const position = new Map<number, bigint>();
  const consumer = kafka.consumer({ groupId: uniqueName('reader'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  try {
    // A batch of only transaction markers never reaches eachBatch: track positions from the batch events.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      const p = e.payload as { partition: number; lastOffset: string };
      position.set(p.partition, BigInt(p.lastOffset) + 1n);
    });
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          const ctx = (m as unknown as { batchContext: { producerId: string; producerEpoch: number } }).batchContext;
          records.push({
            partition: batch.partition,
            offset: BigInt(m.offset),
            eventId: m.headers?.event_id?.toString() ?? '',
            producer: `${ctx.producerId}/${ctx.producerEpoch}`,
          });
        }
      },
    });
    await waitUntil('the topic read to its end', () => [...high].every(([p, h]) => h === 0n || (position.get(p) ?? 0n) >= h), 60_000);
  } finally {
    await consumer.disconnect();
  }
  return records.sort((a, b) => a.partition - b.partition || (a.offset < b.offset ? -1 : 1));
}

test('a leader whose lock connection goes silent steps down, and nothing it sends lands after the new leader took over', async () => {
  const topic = uniqueName('split');
  const target = new URL(db.url);
  const started = await PgProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  proxy = started.proxy;
  const proxiedUrl = new URL(db.url);
  proxiedUrl.host = `127.0.0.1:${started.port}`;
  const extra = { OUTBOX_TOPIC_PARTITIONS: '2', OUTBOX_RELAY_BATCH_SIZE: '50', OUTBOX_RELAY_TRANSACTIONAL: 'true' };
  const configA = relayConfig(proxiedUrl.toString(), topic, extra);
  const configB = relayConfig(db.url, topic, extra);
  const tuning = { standbyPollMs: 200, leaderCheckTimeoutMs: 1000 };

  const a = startRelay({ config: configA, logger, ...tuning });
  relays.push(a);
  await waitUntil('A leads', () => a.isLeader());
  const b = startRelay({ config: configB, logger, ...tuning });
  relays.push(b);

  const controller = new AbortController();
  const writing = writeWorkload(db.pool, { writers: 2, total: 4_000, aggregates: 40, perTx: 4, ratePerSec: 800, signal: controller.signal });
  try {
    await waitUntil('A published', async () => {
      const { rows } = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NOT NULL');
      return Number(rows[0]!.n) > 200;
    });
    expect(b.isLeader()).toBe(false);

    // Silence A's lock connection, then terminate its backend: the lock is gone, and A is not told.
    const lockConnection = proxy.connections.find((c) => c.applicationName === 'kafka-outbox-relay-leader' && !c.client.destroyed);
    expect(lockConnection).toBeDefined();
    lockConnection!.silenced = true;
    const { rows: terminated } = await db.pool.query<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = current_database() AND client_port = $1`,
      [lockConnection!.upstream.localPort],
    );
    expect(terminated).toEqual([{ ok: true }]);

    await waitUntil('B leads', () => b.isLeader());
  } catch (err) {
    controller.abort(); // do not leave the writers running against a pool that afterAll ends
    await writing.catch(() => undefined);
    throw err;
  }
  expect(await writing).toBe(4_000); // the writers go on across the handover
  await waitUntil('every committed event delivered', async () => {
    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL');
    return rows[0]!.n === '0';
  });

  const records = await readWithProducers(createKafka(configB.kafka, logger), topic);
  const { rows: ledger } = await db.pool.query<{ event_id: string }>('SELECT event_id::text FROM outbox');
  const onTopic = new Set(records.map((r) => r.eventId));
  expect(ledger.filter((r) => !onTopic.has(r.event_id))).toEqual([]); // nothing lost

  // Per partition, the producers in offset order: each appears in one run only. A producer that comes
  // back after another one wrote is a second leader publishing after the handover.
  const interleaved: string[] = [];
  for (const partition of new Set(records.map((r) => r.partition))) {
    const runs: string[] = [];
    for (const r of records.filter((x) => x.partition === partition)) if (runs[runs.length - 1] !== r.producer) runs.push(r.producer);
    if (new Set(runs).size !== runs.length) interleaved.push(`partition ${partition}: ${runs.join(' → ')}`);
  }
  const producers = new Set(records.map((r) => r.producer));
  process.stdout.write(`split brain: ${records.length} records from producers ${[...producers].join(', ')}\n`);
  expect(interleaved).toEqual([]);
  expect(producers.size).toBeGreaterThanOrEqual(2); // A's, then B's
  await waitUntil('A stepped down', () => !a.isLeader(), 10_000);
  expect(b.isLeader()).toBe(true);
  await a.stop();
  await b.stop();
});
