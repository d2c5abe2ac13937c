import { readinessChecks, startAdminServer, type AdminServer } from '../../core/admin-server';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/logger';
import { createMetrics, METRIC_NAMES } from '../../core/metrics';
import { useTestDatabase } from '../support/isolation';

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
  expect(m.body).toMatch(/^projector_consumer_lag\{projection="users",topic="user.events",partition="0",component="test"\} 7$/m);
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
