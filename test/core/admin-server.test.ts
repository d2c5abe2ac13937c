import type { Gauge } from 'prom-client';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import pg from 'pg';
import { relayMetricsObserver } from '../../cli/commands/run';
import { readinessChecks, startAdminServer, type AdminServer } from '../../core/admin-server';
import { loadConfig } from '../../core/config';
import { createLiveness } from '../../core/lifecycle';
import { silentLogger } from '../../core/logger';
import { createMetrics, METRIC_NAMES, readBacklog } from '../../core/metrics';
import { projectorMetrics, startProjector } from '../../projector';
import { startRelay } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, spawnTs, type Child } from '../support/processes';
import { INSERT_EVENT, relayConfig, relayEnv } from '../support/relay-env';

// The admin port against the real servers: /metrics with the outbox metrics (DB-backed gauges read at
// scrape time), /healthz, and /readyz naming the check that fails.
const config = loadConfig(process.env, { database: true, kafka: true, registry: true });
const db = useTestDatabase({ poolSize: 2 });
const servers: AdminServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function get(port: number, path: string): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

test('/metrics, /healthz and /readyz with every dependency up', async () => {
  await db.pool.query(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     VALUES ('user', 'm1', 'UserRegistered', 1, '{"email":"m@example.com"}', 'tester', 't-1'), ('user', 'm2', 'UserRegistered', 1, '{}', 'tester', 't-2')`,
  );
  await db.pool.query(`UPDATE outbox_delivery SET parked_at = now(), park_reason = 'x' WHERE aggregate_id = 'm2'`);
  const metrics = createMetrics({ query: (sql, params) => db.pool.query(sql, params), labels: { component: 'test' } });
  metrics.publishedTotal.inc({ topic: 'user.events' }, 5);
  metrics.publishLatency.observe({ topic: 'user.events' }, 0.02);
  metrics.consumerLag.set({ projection: 'users', topic: 'user.events', partition: '0' }, 7);
  metrics.dlqTotal.inc({ projection: 'users' });
  metrics.rebuildProgress.set({ projection: 'users' }, 0.5);
  const server = await startAdminServer({
    port: 0,
    registry: metrics.registry,
    readiness: readinessChecks({ pool: db.pool, kafka: config.kafka, registry: config.registry }),
    logger: silentLogger(),
  });
  servers.push(server);

  const m = await get(server.port, '/metrics');
  expect(m.status).toBe(200);
  expect(m.type).toContain('text/plain');
  for (const name of Object.values(METRIC_NAMES)) expect(m.body).toContain(`# TYPE ${name}`);
  expect(m.body).toMatch(/^outbox_backlog\{component="test"\} 2$/m);
  expect(m.body).toMatch(/^outbox_parked\{component="test"\} 1$/m);
  expect(m.body).toMatch(/^outbox_oldest_undelivered_age_seconds\{component="test"\} \d/m);
  expect(m.body).toMatch(/^outbox_published_total\{topic="user.events",component="test"\} 5$/m);
  expect(m.body).toMatch(/^outbox_publish_latency_seconds_bucket\{le="0.025",component="test",topic="user.events"\} 1$/m);
  expect(m.body).toMatch(/^outbox_projector_consumer_lag\{projection="users",topic="user.events",partition="0",component="test"\} 7$/m);
  expect(m.body).toContain('process_cpu_user_seconds_total'); // default metrics

  // The gauges move with the database.
  await db.pool.query(`UPDATE outbox_delivery SET delivered_at = now() WHERE aggregate_id = 'm1'`);
  await new Promise((r) => setTimeout(r, 600));
  expect((await get(server.port, '/metrics')).body).toMatch(/^outbox_backlog\{component="test"\} 1$/m);

  expect(await get(server.port, '/healthz')).toMatchObject({ status: 200 });
  const ready = await get(server.port, '/readyz');
  expect(ready.status).toBe(200);
  expect(JSON.parse(ready.body)).toMatchObject({ status: 'ready', checks: { postgres: { ok: true }, kafka: { ok: true }, registry: { ok: true } } });
  expect((await get(server.port, '/nope')).status).toBe(404);
});

test('/readyz answers 503 naming the unreachable dependency, within the check timeout', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const server = await startAdminServer({
    port: 0,
    registry: metrics.registry,
    readiness: readinessChecks({
      pool: db.pool,
      kafka: { ...config.kafka, brokers: ['127.0.0.1:1'] },
      registry: { url: 'http://127.0.0.1:1' },
      timeoutMs: 1500,
    }),
    logger: silentLogger(),
  });
  servers.push(server);
  const started = Date.now();
  const res = await get(server.port, '/readyz');
  expect(Date.now() - started).toBeLessThan(4000);
  expect(res.status).toBe(503);
  const body = JSON.parse(res.body);
  expect(body.status).toBe('not ready');
  expect(body.failing.sort()).toEqual(['kafka', 'registry']);
  expect(body.checks.postgres.ok).toBe(true);
  expect(body.checks.kafka.error).toMatch(/ECONNREFUSED|Connection error/);
  expect(body.checks.registry.error).toMatch(/ECONNREFUSED|fetch failed/);
  // Liveness does not depend on the dependencies.
  expect((await get(server.port, '/healthz')).status).toBe(200);
});

test('a port in use is a clear error', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const first = await startAdminServer({ port: 0, registry: metrics.registry, readiness: async () => ({ ok: true, checks: {} }), logger: silentLogger() });
  servers.push(first);
  await expect(startAdminServer({ port: first.port, registry: metrics.registry, readiness: async () => ({ ok: true, checks: {} }), logger: silentLogger() })).rejects.toThrow(
    `the admin port 127.0.0.1:${first.port} cannot be opened: EADDRINUSE`,
  );
});

/** Polls `fn` until it returns true (a bounded wait for an asynchronous state, not a timing assertion). */
async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('/healthz answers 503 while the relay loop is stuck, and 200 again once it moves', async () => {
  const config = relayConfig(db.url, uniqueName('live'), { OUTBOX_RELAY_POLL_INTERVAL: '100ms', OUTBOX_LIVENESS_TIMEOUT: '2s' });
  const liveness = createLiveness({ timeoutMs: config.livenessTimeoutMs! });
  const metrics = createMetrics({ defaultMetrics: false });
  const server = await startAdminServer({ port: 0, registry: metrics.registry, readiness: async () => ({ ok: true, checks: {} }), liveness, logger: silentLogger() });
  servers.push(server);
  const relay = startRelay({ config, logger: silentLogger(), observer: relayMetricsObserver(metrics, liveness) });
  const blocker = new pg.Client({ connectionString: db.url });
  await blocker.connect();
  try {
    await until('the relay to lead', async () => relay.isLeader());
    // (Its first round as leader registers the schemas and creates the topics, which may take a while.)
    await until('/healthz to answer 200', async () => (await get(server.port, '/healthz')).status === 200);
    expect(JSON.parse((await get(server.port, '/healthz')).body)).toMatchObject({ status: 'ok', timeoutSeconds: 2 });

    // A lock nobody releases: the relay's next claim waits on it for ever, as on a wedged connection.
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE outbox.outbox_delivery IN ACCESS EXCLUSIVE MODE');
    await until('/healthz to fail', async () => (await get(server.port, '/healthz')).status === 503);
    const stuck = JSON.parse((await get(server.port, '/healthz')).body);
    expect(stuck).toMatchObject({ status: 'stuck', timeoutSeconds: 2 });
    expect(stuck.sinceProgressSeconds).toBeGreaterThanOrEqual(2);
    expect(stuck.error).toMatch(/^the main loop has not made progress for [\d.]+s \(OUTBOX_LIVENESS_TIMEOUT 2s\)$/);

    await blocker.query('ROLLBACK');
    await until('/healthz to recover', async () => (await get(server.port, '/healthz')).status === 200);
  } finally {
    await blocker.end();
    await relay.stop();
  }
});

test('/healthz answers 503 while a projector batch is stuck, and 200 again once it is applied', async () => {
  const topic = uniqueName('live_proj');
  const config = relayConfig(db.url, topic, { OUTBOX_RELAY_POLL_INTERVAL: '100ms', OUTBOX_LIVENESS_TIMEOUT: '2s', KAFKA_CLIENT_ID: topic });
  const liveness = createLiveness({ timeoutMs: config.livenessTimeoutMs! });
  const metrics = createMetrics({ defaultMetrics: false });
  const server = await startAdminServer({ port: 0, registry: metrics.registry, readiness: async () => ({ ok: true, checks: {} }), liveness, logger: silentLogger() });
  servers.push(server);
  const relay = startRelay({ config, logger: silentLogger() });
  const blocker = new pg.Client({ connectionString: db.url });
  await blocker.connect();
  let projector: Awaited<ReturnType<typeof startProjector>> | undefined;
  try {
    projector = await startProjector({ config, logger: silentLogger(), heartbeat: () => liveness.beat(), sessionTimeoutMs: 10_000 });
    const running = projector;
    await db.pool.query(INSERT_EVENT, [`first-${topic}`, 'first@example.com', 'req-first']);
    await until('the first event to be applied', async () => running.lag().length > 0, 60_000);
    await until('/healthz to answer 200', async () => (await get(server.port, '/healthz')).status === 200);

    // The next batch waits for ever on a lock held on the projector's checkpoints.
    await blocker.query('BEGIN');
    await blocker.query(`LOCK TABLE ${config.projector.schema}.projector_offsets IN ACCESS EXCLUSIVE MODE`);
    await db.pool.query(INSERT_EVENT, [`second-${topic}`, 'second@example.com', 'req-second']);
    await until('/healthz to fail', async () => (await get(server.port, '/healthz')).status === 503);
    expect(JSON.parse((await get(server.port, '/healthz')).body)).toMatchObject({ status: 'stuck', timeoutSeconds: 2 });

    await blocker.query('ROLLBACK');
    await until('/healthz to recover', async () => (await get(server.port, '/healthz')).status === 200);
  } finally {
    await blocker.end();
    await projector?.stop();
    await relay.stop();
  }
});

test('readiness probes keep one Kafka admin client instead of connecting anew each time', async () => {
  // A TCP proxy in front of the bootstrap broker counts the clients that connect through it.
  const [host, port] = config.kafka.brokers[0]!.split(':') as [string, string];
  let connections = 0;
  const sockets = new Set<Socket>();
  const proxy = createServer((client) => {
    connections++;
    const upstream = connect(Number(port), host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const readiness = readinessChecks({ kafka: { ...config.kafka, brokers: [`127.0.0.1:${(proxy.address() as AddressInfo).port}`] }, timeoutMs: 5000 });
  try {
    for (let i = 0; i < 5; i++) {
      const r = await readiness();
      expect(r).toMatchObject({ ok: true, checks: { kafka: { ok: true } } });
    }
    expect(connections).toBe(1);
  } finally {
    await readiness.close?.();
    for (const s of sockets) s.destroy();
    await new Promise((r) => proxy.close(r));
  }
});

test('the backlog metrics read only undelivered rows, however many delivered rows are kept', async () => {
  const d = await db.pool.connect();
  try {
    await d.query(`UPDATE outbox.outbox_delivery SET delivered_at = now() WHERE delivered_at IS NULL`); // earlier tests' events
    await d.query(
      `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
       SELECT 'user', 'bulk-' || g, 'UserRegistered', 1, '{}'::jsonb, 'tester', 't-bulk' FROM generate_series(1, 20000) g`,
    );
    const { rows } = await d.query<{ id: string }>(`SELECT id FROM outbox.outbox_delivery WHERE aggregate_id LIKE 'bulk-%' ORDER BY id DESC LIMIT 4`);
    const pending = rows.map((r) => r.id);
    await d.query(`UPDATE outbox.outbox_delivery SET delivered_at = now() WHERE aggregate_id LIKE 'bulk-%' AND id <> ALL($1::bigint[])`, [pending]);
    await d.query(`UPDATE outbox.outbox_delivery SET parked_at = now(), park_reason = 'x' WHERE id = $1`, [pending[0]]);
    await d.query('VACUUM ANALYZE outbox.outbox_delivery'); // what autovacuum does after such an update
  } finally {
    d.release();
  }

  const statements: string[] = [];
  const stats = await readBacklog((sql, params) => {
    statements.push(sql);
    return db.pool.query(sql, params);
  }, 'outbox');
  expect(stats).toMatchObject({ backlog: 4, parkedAggregates: 1, parkedEvents: 1 });
  expect(statements).toHaveLength(1);

  // Rows each scan of outbox_delivery produced or filtered out, from the executed plan.
  const { rows: plan } = await db.pool.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${statements[0]!}`);
  const scans: Array<{ type: string; rows: number }> = [];
  const walk = (node: Record<string, unknown>): void => {
    if (node['Relation Name'] === 'outbox_delivery') {
      const loops = Number(node['Actual Loops'] ?? 1);
      scans.push({
        type: String(node['Node Type']),
        rows: Number(node['Actual Rows'] ?? 0) * loops + Number(node['Rows Removed by Filter'] ?? 0) + Number(node['Rows Removed by Index Recheck'] ?? 0),
      });
    }
    for (const child of (node.Plans as Array<Record<string, unknown>> | undefined) ?? []) walk(child);
  };
  walk((plan[0]!['QUERY PLAN'] as Array<{ Plan: Record<string, unknown> }>)[0]!.Plan);
  expect(scans.length).toBeGreaterThan(0);
  expect(scans.filter((s) => s.type === 'Seq Scan')).toEqual([]);
  expect(scans.reduce((n, s) => n + s.rows, 0)).toBeLessThan(100);
});

test('the relay exports its leadership and its failures by stage', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const exported = relayMetricsObserver(metrics);
  // The gauge as the relay leaves it after each leadership change (read synchronously, before the next one).
  const leaderAfter: string[] = [];
  const reads: Array<Promise<void>> = [];
  const observer = {
    ...exported,
    leadership(isLeader: boolean) {
      exported.leadership?.(isLeader);
      const gauge = metrics.registry.getSingleMetric('outbox_relay_leader') as Gauge;
      reads.push(gauge.get().then((g) => void leaderAfter.push(`${isLeader}:${String(g.values[0]?.value)}`)));
    },
  };
  // A relay leads (gauge 1) and gives leadership up when it stops (gauge 0).
  const healthy = startRelay({ config: relayConfig(db.url, uniqueName('lead')), logger: silentLogger(), observer, standbyPollMs: 100 });
  try {
    await until('the relay to lead', async () => {
      await Promise.all(reads);
      return leaderAfter.includes('true:1');
    });
  } finally {
    await healthy.stop();
  }
  await Promise.all(reads);
  expect(leaderAfter).toEqual(['true:1', 'false:0']);
  // A relay whose registry is unreachable fails in its encode stage (schema registration) and retries.
  const failing = startRelay({
    config: relayConfig(db.url, uniqueName('fail'), { SCHEMA_REGISTRY_URL: 'http://127.0.0.1:1' }),
    logger: silentLogger(),
    observer,
    standbyPollMs: 100,
  });
  try {
    await until('a failure counted', async () => /^outbox_relay_failures_total\{stage="encode"\} [1-9]/m.test(await metrics.registry.metrics()));
  } finally {
    await failing.stop();
  }
  const text = await metrics.registry.metrics();
  expect(text).toContain('# TYPE outbox_relay_failures_total counter');
  expect(text).toContain('# TYPE outbox_parked_events gauge');
});

test('outbox relay serves its admin endpoints by default on loopback, on a free port when the default one is taken', async () => {
  // Hold the default port (or find it already held) so that the fallback is what runs.
  const holder = createServer();
  await new Promise<void>((resolve) => {
    holder.once('error', () => resolve());
    holder.listen(9464, '127.0.0.1', () => resolve());
  });
  const env = relayEnv(db.url, uniqueName('default_admin'), { LOG_LEVEL: 'info' });
  delete env.OUTBOX_ADMIN_PORT;
  delete env.OUTBOX_ADMIN_HOST;
  let relay: Child | undefined;
  let chosen: Child | undefined;
  try {
    relay = spawnTs('bin/outbox.js', env, ['relay']);
    const started = relay;
    let port = 0;
    await until(
      'the admin server to be announced',
      async () => {
        port = Number(/admin server on http:\/\/127\.0\.0\.1:(\d+)/.exec(started.output())?.[1] ?? 0);
        return port > 0 || started.proc.exitCode !== null;
      },
      60_000,
    );
    expect(port).not.toBe(9464);
    expect(relay.output()).toContain('the default admin port 9464 is in use');
    await until('the relay to lead', async () => /^outbox_relay_leader\{component="relay"\} 1$/m.test((await get(port, '/metrics')).body), 60_000);
    expect((await get(port, '/healthz')).status).toBe(200);
    expect((await get(port, '/readyz')).status).toBe(200);

    // A port that was asked for and is taken stops the command.
    chosen = spawnTs('bin/outbox.js', { ...env, OUTBOX_ADMIN_PORT: '9464', OUTBOX_INSTANCE_ID: uniqueName('chosen') }, ['relay']);
    expect(await chosen.exited).toBe(1);
    expect(chosen.output()).toContain('the admin port 127.0.0.1:9464 cannot be opened: EADDRINUSE');
  } finally {
    if (relay) await killHard(relay);
    if (chosen) await killHard(chosen);
    await new Promise((r) => holder.close(r));
  }
});

test('every kafka-outbox metric, relay and projector alike, is named with the one prefix outbox_', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  projectorMetrics(metrics.registry);
  const names = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).sort();
  expect(names.length).toBeGreaterThanOrEqual(Object.keys(METRIC_NAMES).length + 4);
  expect(names.filter((n) => !n.startsWith('outbox_'))).toEqual([]);
  expect(names.filter((n) => n.startsWith('outbox_projector_'))).toHaveLength(8);
});
