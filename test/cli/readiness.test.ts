import { randomUUID } from 'node:crypto';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { appendEvents, withTransaction, type NewEvent } from '../../writer/index';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { freePort, privateStack, waitDead, type PrivateStack } from '../support/private-stack';
import { killHard, spawnTs, type Child } from '../support/processes';
import { emptyEnvFile } from './run-outbox';

// The admin ports of `outbox relay` and `outbox project`, run as operators run them (child processes):
// 1. on the shared stack, /metrics exposes every listed metric, and the values move as events are
//    written (scraped before and after);
// 2. on a PRIVATE stack (the shared broker is never stopped), /readyz answers 503 naming kafka while the
//    broker is down, and 200 again after it restarted.
const db = useTestDatabase({ poolSize: 4 });
const children: Child[] = [];
let ps: PrivateStack | undefined;

afterAll(async () => {
  await Promise.all(children.map((c) => killHard(c)));
  await ps?.destroy((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed === true);
}, 90_000);

const RELAY_METRICS = [
  'outbox_backlog',
  'outbox_oldest_undelivered_age_seconds',
  'outbox_published_total',
  'outbox_publish_latency_seconds',
  'outbox_parked',
  'outbox_parked_events_total',
];
const PROJECTOR_METRICS = ['outbox_projector_consumer_lag', 'outbox_projector_dlq_total', 'outbox_projector_rebuild_progress_ratio'];

function outboxEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    OUTBOX_ENV_FILE: emptyEnvFile(),
    OUTBOX_RELAY_POLL_INTERVAL: '200ms',
    OUTBOX_TOPIC_PARTITIONS: '3',
    LOG_LEVEL: 'warn',
    ...vars,
  };
}

function start(command: 'relay' | 'project', port: number, env: NodeJS.ProcessEnv): Child {
  const child = spawnTs('bin/outbox.js', env, [command, '--admin-port', String(port)]);
  children.push(child);
  return child;
}

let lastSeen = '';

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, child?: Child): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  lastSeen = '';
  for (;;) {
    const v = await fn().catch((err: unknown) => {
      lastSeen = String(err);
      return undefined;
    });
    if (v !== undefined) return v;
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what} (last seen: ${lastSeen})${child ? `; exit ${String(child.proc.exitCode)}, child output:\n${child.output().slice(-3000)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function readyz(port: number): Promise<{ status: number; body: { status: string; failing?: string[]; checks: Record<string, { ok: boolean; error?: string }> } }> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(10_000) });
  const r = { status: res.status, body: (await res.json()) as never };
  lastSeen = `HTTP ${r.status} ${JSON.stringify(r.body)}`;
  return r;
}

async function waitForTopic(topic: string, child: Child): Promise<void> {
  const kafka = createKafka(loadConfig({ KAFKA_BROKERS: process.env.KAFKA_BROKERS! }, { kafka: true }).kafka, silentLogger(), 'readiness-test');
  const admin = kafka.admin();
  await admin.connect();
  try {
    await waitFor(
      `the relay to create ${topic}`,
      async () => {
        if (!(await admin.listTopics()).includes(topic)) return undefined; // (metadata of a missing topic could auto-create it)
        const meta = await admin.fetchTopicMetadata({ topics: [topic] });
        return meta.topics[0]?.partitions.every((p) => p.leader >= 0) ? true : undefined;
      },
      60_000,
      child,
    );
  } finally {
    await admin.disconnect();
  }
}

/** Prometheus text → { 'name{labels}': value } (labels as printed), plus the declared metric types. */
async function scrape(port: number): Promise<{ samples: Map<string, number>; types: Map<string, string> }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    else if (line && !line.startsWith('#')) {
      const i = line.lastIndexOf(' ');
      samples.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
  }
  return { samples, types };
}

/** Sum of the samples of one metric (all label sets), optionally only those whose labels contain `having`. */
function sum(s: Map<string, number>, name: string, having = ''): number {
  let total = 0;
  for (const [k, v] of s) if ((k === name || k.startsWith(`${name}{`)) && k.includes(having)) total += v;
  return total;
}

/** Projections that have a outbox_projector_consumer_lag sample for `topic`. */
function lagProjections(s: Map<string, number>, topic: string): string[] {
  const names = new Set<string>();
  for (const k of s.keys()) if (k.startsWith('outbox_projector_consumer_lag{') && k.includes(`topic="${topic}"`)) names.add(/projection="([^"]+)"/.exec(k)?.[1] ?? '?');
  return [...names].sort();
}

function user(id: string, eventType: string, schemaVersion: number, payload: Record<string, unknown>): NewEvent {
  return {
    aggregateType: 'user',
    aggregateId: id,
    eventType,
    schemaVersion,
    payload,
    actorId: 'user:readiness-test',
    traceId: randomUUID().replace(/-/g, ''),
    correlationId: `req-${id}`,
  };
}

test('/metrics of relay and projector: every listed metric, values moving as events are written', async () => {
  const topic = uniqueName('ready');
  const env = outboxEnv({
    DATABASE_URL: db.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
    SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
    OUTBOX_TOPIC_MAP: `user=${topic}`,
    OUTBOX_TOPIC_SUFFIX: `.${topic}`,
    KAFKA_CLIENT_ID: topic,
    OUTBOX_INSTANCE_ID: topic,
  });
  const [relayPort, projectorPort] = [await freePort(), await freePort()];
  const relay = start('relay', relayPort, env);
  await waitFor('relay /readyz 200', async () => ((await readyz(relayPort)).status === 200 ? true : undefined), 60_000, relay);
  // The projector starts once the relay has created the topic: `outbox project` exits 1 when its topic
  // is missing or still being created ("This server does not host this topic-partition").
  await waitForTopic(topic, relay);
  const projector = start('project', projectorPort, env);
  await waitFor('projector /readyz 200', async () => ((await readyz(projectorPort)).status === 200 ? true : undefined), 60_000, projector);

  const r1 = await scrape(relayPort);
  const p1 = await scrape(projectorPort);
  for (const name of RELAY_METRICS) expect({ name, type: r1.types.get(name) }).toEqual({ name, type: expect.stringMatching(/gauge|counter|histogram/) });
  for (const name of PROJECTOR_METRICS) expect({ name, type: p1.types.get(name) }).toEqual({ name, type: expect.stringMatching(/gauge|counter/) });
  expect(r1.types.get('outbox_publish_latency_seconds')).toBe('histogram');

  // Write: 10 registrations + 10 email changes; one change for a user that does not exist (the users
  // projection dead-letters it); one event whose payload does not fit its schema (the relay parks it).
  const ids = Array.from({ length: 10 }, (_, i) => `u${i}-${topic}`);
  for (const id of ids) {
    await withTransaction(db.pool, (c) => appendEvents(c, [user(id, 'UserRegistered', 1, { email: `${id}@example.com`, name: 'Test User' })]));
  }
  for (const id of ids) {
    await withTransaction(db.pool, (c) => appendEvents(c, [user(id, 'UserEmailChanged', 2, { new_email: `new.${id}@example.com`, verified: true })], { expectedVersion: 1 }));
  }
  await withTransaction(db.pool, (c) => appendEvents(c, [user(`ghost-${topic}`, 'UserEmailChanged', 2, { new_email: 'ghost@example.com', verified: false })]));
  await withTransaction(db.pool, (c) => appendEvents(c, [user(`poison-${topic}`, 'UserEmailChanged', 1, { email: 42 })]));
  const published = 21;

  // Wait until the relay published everything publishable (and parked the poison) and the projector applied it.
  await waitFor(
    'the relay to publish 21 events and park 1',
    async () => {
      const { rows } = await db.pool.query<{ delivered: string; parked: string }>(
        'SELECT count(delivered_at) AS delivered, count(*) FILTER (WHERE parked_at IS NOT NULL AND delivered_at IS NULL) AS parked FROM outbox_delivery',
      );
      return Number(rows[0]!.delivered) === published && Number(rows[0]!.parked) === 1 ? true : undefined;
    },
    60_000,
    relay,
  );
  await waitFor(
    'the projector to apply 21 events and dead-letter 1',
    async () => {
      const p = await scrape(projectorPort);
      return sum(p.samples, 'outbox_projector_applied_events_total', 'projection="audit_log"') === published &&
        sum(p.samples, 'outbox_projector_dlq_total', 'projection="users"') === 1
        ? true
        : undefined;
    },
    60_000,
    projector,
  );
  await new Promise((r) => setTimeout(r, 1100)); // the oldest undelivered (parked) event ages

  const r2 = await scrape(relayPort);
  const p2 = await scrape(projectorPort);
  const moved = {
    published: [sum(r1.samples, 'outbox_published_total'), sum(r2.samples, 'outbox_published_total', `topic="${topic}"`)],
    latencyCount: [sum(r1.samples, 'outbox_publish_latency_seconds_count'), sum(r2.samples, 'outbox_publish_latency_seconds_count', `topic="${topic}"`)],
    backlog: [sum(r1.samples, 'outbox_backlog'), sum(r2.samples, 'outbox_backlog')],
    parked: [sum(r1.samples, 'outbox_parked'), sum(r2.samples, 'outbox_parked')],
    parkedEvents: [sum(r1.samples, 'outbox_parked_events_total'), sum(r2.samples, 'outbox_parked_events_total')],
    dlq: [sum(p1.samples, 'outbox_projector_dlq_total'), sum(p2.samples, 'outbox_projector_dlq_total', 'projection="users"')],
    // Lag series appear per projection and partition with its first batch.
    lagProjections: [lagProjections(p1.samples, topic), lagProjections(p2.samples, topic)],
  };
  process.stdout.write(`readiness: metrics before → after ${JSON.stringify(moved)}\n`);
  expect(moved).toEqual({
    published: [0, published],
    latencyCount: [0, published],
    backlog: [0, 1], // the parked event stays undelivered
    parked: [0, 1],
    parkedEvents: [0, 1],
    dlq: [0, 1],
    lagProjections: [[], ['audit_log', 'users']],
  });
  expect(sum(r2.samples, 'outbox_oldest_undelivered_age_seconds')).toBeGreaterThan(sum(r1.samples, 'outbox_oldest_undelivered_age_seconds'));
  expect(sum(r2.samples, 'outbox_publish_latency_seconds_sum')).toBeGreaterThan(0);
  expect(sum(p2.samples, 'outbox_projector_consumer_lag', `topic="${topic}"`)).toBe(0); // caught up
  expect(p2.types.get('outbox_projector_rebuild_progress_ratio')).toBe('gauge'); // moves only during a rebuild

  // A clean stop (SIGTERM → exit 0), then nothing left running.
  relay.proc.kill('SIGTERM');
  projector.proc.kill('SIGTERM');
  expect(await relay.exited).toBe(0);
  expect(await projector.exited).toBe(0);
  // The only error lines: the parking, logged with the event id and the reason.
  const errors = relay
    .output()
    .split('\n')
    .filter((l) => /"level":(50|60)/.test(l));
  expect(errors).toHaveLength(1);
  expect(JSON.parse(errors[0]!)).toMatchObject({ aggregateId: `poison-${topic}`, eventId: expect.any(String), reason: 'email: expected string, got number 42' });
  expect(projector.output()).not.toMatch(/"level":60/);
}, 180_000);

test('/readyz: 503 naming kafka while the broker is down, 200 after it restarts (private stack)', async () => {
  ps = await privateStack(uniqueName('ready'));
  const up = await ps.stack('up');
  if (up.code !== 0) throw new Error(`private stack did not start:\n${up.out}`);
  const urls = ps.urls();
  const topic = uniqueName('readyk');
  const port = await freePort();
  const relay = start(
    'relay',
    port,
    outboxEnv({
      DATABASE_URL: db.url,
      KAFKA_BROKERS: urls.KAFKA_BROKERS,
      SCHEMA_REGISTRY_URL: urls.SCHEMA_REGISTRY_URL,
      OUTBOX_TOPIC_MAP: `user=${topic}`,
      OUTBOX_TOPIC_SUFFIX: `.${topic}`,
      OUTBOX_INSTANCE_ID: topic,
    }),
  );
  const ready = await waitFor(
    'relay /readyz 200',
    async () => {
      const r = await readyz(port);
      return r.status === 200 ? r : undefined;
    },
    60_000,
    relay,
  );
  expect(ready.body).toMatchObject({ status: 'ready', checks: { postgres: { ok: true }, kafka: { ok: true }, registry: { ok: true } } });

  const broker = ps.pidOf('kafka');
  process.kill(broker, 'SIGKILL');
  await waitDead(broker);
  const down = await waitFor(
    '/readyz 503 with kafka failing',
    async () => {
      const r = await readyz(port);
      return r.status === 503 ? r : undefined;
    },
    30_000,
    relay,
  );
  expect(down.body).toMatchObject({
    status: 'not ready',
    failing: ['kafka'],
    checks: { postgres: { ok: true }, kafka: { ok: false, error: expect.any(String) }, registry: { ok: true } },
  });
  expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200); // alive, just not ready

  expect((await ps.stack('up')).code).toBe(0); // restarts the broker
  const back = await waitFor(
    '/readyz 200 after the restart',
    async () => {
      const r = await readyz(port);
      return r.status === 200 ? r : undefined;
    },
    60_000,
    relay,
  );
  expect(back.body.status).toBe('ready');

  relay.proc.kill('SIGTERM');
  expect(await relay.exited).toBe(0);
}, 300_000);
