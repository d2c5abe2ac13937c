import { createLogger } from '../../core/logger';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { childEnv, emptyEnvFile, runOutbox } from './run-outbox';

// The database commands against a real PostgreSQL (a per-file database cloned from the migrated
// template), run as child processes exactly as an operator would.
const db = useTestDatabase({ poolSize: 2 });
const silent = createLogger({ level: 'silent' });
const ENV_FILE = emptyEnvFile();
const env = (vars: Record<string, string> = {}) =>
  childEnv({
    OUTBOX_ENV_FILE: ENV_FILE,
    DATABASE_URL: db.url,
    KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
    SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
    ...vars,
  });

interface Inserted {
  id: string;
  event_id: string;
}

async function insertEvent(aggregateId: string, eventType: string, payload: Record<string, unknown>, occurredAt: string): Promise<Inserted> {
  const { rows } = await db.pool.query<Inserted>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id, causation_id, occurred_at)
     VALUES ('user', $1, $2, 1, $3, 'admin-7', $4, 'corr-1', NULL, $5) RETURNING id::text, event_id::text`,
    [aggregateId, eventType, JSON.stringify(payload), `trace-${eventType}`, occurredAt],
  );
  return rows[0]!;
}

let first: Inserted;
let second: Inserted;
let other: Inserted;

beforeAll(async () => {
  first = await insertEvent('u1', 'UserRegistered', { email: 'a@example.com', name: 'Ann' }, '2025-01-01T10:00:00Z');
  second = await insertEvent('u1', 'UserEmailChanged', { email: 'b@example.com' }, '2025-01-02T10:00:00Z');
  other = await insertEvent('u2', 'UserRegistered', { email: 'c@example.com', name: 'Cy' }, '2025-01-03T10:00:00Z');
  await db.pool.query(`UPDATE outbox_delivery SET parked_at = now(), park_reason = 'no schema for UserRegistered v1' WHERE id = $1`, [other.id]);
});

test('migrate applies every migration to a new schema, then is up to date', async () => {
  const schema = uniqueName('cli').toLowerCase();
  const a = await runOutbox(['migrate', '--json'], env({ OUTBOX_SCHEMA: schema }));
  expect(a.stderr).toBe('');
  expect(a.code).toBe(0);
  const applied = JSON.parse(a.stdout) as { schema: string; applied: string[] };
  expect(applied.schema).toBe(schema);
  expect(applied.applied).toContain('0001_outbox');
  const b = await runOutbox(['migrate'], env({ OUTBOX_SCHEMA: schema }));
  expect(b.code).toBe(0);
  expect(b.stdout).toContain(`schema "${schema}" is up to date`);
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = $1 AND tablename = $2', [schema, 'outbox_delivery']);
  expect(rows[0].n).toBe(1);
});

test('status reports backlog, oldest undelivered age, parked aggregates and the registry subjects', async () => {
  const r = await runOutbox(['status', '--json'], env());
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const s = JSON.parse(r.stdout);
  expect(s.database).toMatchObject({ ok: true, backlog: 3, parkedAggregates: 1, parkedEvents: 1 });
  expect(s.database.oldestUndeliveredAgeSeconds).toBeGreaterThanOrEqual(0);
  expect(s.kafka).toMatchObject({ ok: true, brokerCount: 1 });
  expect(s.registry.ok).toBe(true);
  expect(Array.isArray(s.registry.subjects)).toBe(true);
  const text = await runOutbox(['status'], env());
  expect(text.code).toBe(0);
  expect(text.stdout).toMatch(/backlog\s+3 event\(s\)/);
  expect(text.stdout).toMatch(/parked\s+1 aggregate\(s\)/);
});

test('status lists the sharded relay instances and their shards', async () => {
  const r = await runOutbox(['status', '--json'], env());
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).shards).toEqual({ ok: true, shardCount: 32, owners: [], unowned: Array.from({ length: 32 }, (_, i) => i) });
  // An instance holding shards 0-3 and 7 (its lock connection named as a sharded relay names it).
  const { ShardOwnership } = await import('../../relay/own-shards');
  const ownership = new ShardOwnership({ databaseUrl: db.url, schema: 'outbox', instanceId: 'relay-a', logger: silent, onNotify: () => undefined, rebalanceIntervalMs: 60_000 });
  try {
    await ownership.tryAcquire();
    await ownership.verify(); // takes every shard: it is alone
    const text = await runOutbox(['status'], env());
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/Relay shards 32, 1 sharded relay instance\(s\) running/);
    expect(text.stdout).toMatch(/relay-a\s+32 shard\(s\)\s+0-31/);
    const json = JSON.parse((await runOutbox(['status', '--json'], env())).stdout);
    expect(json.shards).toMatchObject({ ok: true, shardCount: 32, unowned: [], owners: [{ instance: 'relay-a', shards: Array.from({ length: 32 }, (_, i) => i) }] });
  } finally {
    await ownership.release();
  }
});

test('parked list, retry and skip', async () => {
  const list = await runOutbox(['parked', 'list', '--json'], env());
  expect(list.code).toBe(0);
  const rows = JSON.parse(list.stdout);
  expect(rows).toEqual([
    expect.objectContaining({ event_id: other.event_id, aggregate_type: 'user', aggregate_id: 'u2', park_reason: 'no schema for UserRegistered v1', event_type: 'UserRegistered' }),
  ]);

  // Not parked: exit 1, one line saying why.
  const notParked = await runOutbox(['parked', 'retry', first.event_id], env());
  expect(notParked.code).toBe(1);
  expect(notParked.lines).toEqual([`outbox: event ${first.event_id} is not a parked event: it is not parked`]);

  const retry = await runOutbox(['parked', 'retry', other.event_id], env());
  expect(retry.stderr).toBe('');
  expect(retry.code).toBe(0);
  let row = (await db.pool.query('SELECT parked_at, park_reason, delivered_at FROM outbox_delivery WHERE id = $1', [other.id])).rows[0];
  expect(row).toEqual({ parked_at: null, park_reason: null, delivered_at: null });

  await db.pool.query(`UPDATE outbox_delivery SET parked_at = now(), park_reason = 'poison' WHERE id = $1`, [other.id]);
  const skip = await runOutbox(['parked', 'skip', other.event_id, '--reason', 'ticket OPS-1', '--json'], env());
  expect(skip.code).toBe(0);
  expect(JSON.parse(skip.stdout)).toMatchObject({ action: 'skip', event_id: other.event_id, park_reason: 'skipped: poison (ticket OPS-1)' });
  expect(skip.lines).toHaveLength(1); // the operator action is logged
  expect(JSON.parse(skip.lines[0]!)).toMatchObject({ level: 40, eventId: other.event_id, msg: expect.stringContaining('skipped') });
  row = (await db.pool.query('SELECT parked_at IS NOT NULL AS parked, park_reason, delivered_at IS NOT NULL AS delivered, topic FROM outbox_delivery WHERE id = $1', [other.id]))
    .rows[0];
  expect(row).toEqual({ parked: true, park_reason: 'skipped: poison (ticket OPS-1)', delivered: true, topic: null });

  const again = await runOutbox(['parked', 'skip', other.event_id], env());
  expect(again.code).toBe(1);
  expect(again.lines).toEqual([`outbox: event ${other.event_id} is not a parked event: it is already delivered`]);
});

test('audit history: actor, trace and correlation ids, payload, as table/json/csv and --at', async () => {
  const [json, csv, table, at, none] = await Promise.all([
    runOutbox(['audit', 'history', 'user/u1', '--format', 'json'], env()),
    runOutbox(['audit', 'history', 'user/u1', '--format', 'csv'], env()),
    runOutbox(['audit', 'history', 'user/u1'], env()),
    runOutbox(['audit', 'history', 'user/u1', '--at', '2025-01-01T12:00:00Z', '--json'], env()),
    runOutbox(['audit', 'history', 'user/nobody'], env()),
  ]);
  expect(json.code).toBe(0);
  const h = JSON.parse(json.stdout);
  expect(h.aggregate).toBe('user/u1');
  expect(h.events).toHaveLength(2);
  expect(h.events[0]).toMatchObject({
    event_id: first.event_id,
    aggregate_version: 1,
    event_type: 'UserRegistered',
    actor_id: 'admin-7',
    trace_id: 'trace-UserRegistered',
    correlation_id: 'corr-1',
    payload: { email: 'a@example.com', name: 'Ann' },
  });
  expect(h.events[1]).toMatchObject({ event_id: second.event_id, aggregate_version: 2, prev_hash: h.events[0].hash });
  // State before/after, folded with the users reducer.
  expect(h.events[0].state_before).toBeNull();
  expect(h.events[0].state_after).toMatchObject({ userId: 'u1', email: 'a@example.com', displayName: 'Ann', version: 1 });
  expect(h.events[1].state_before).toEqual(h.events[0].state_after);
  expect(h.events[1].state_after).toMatchObject({ email: 'b@example.com', version: 2 });
  expect(csv.code).toBe(0);
  const csvLines = csv.stdout.trim().split('\r\n');
  expect(csvLines[0]).toMatch(/^VERSION,OCCURRED_AT,EVENT,ACTOR,TRACE_ID,CORRELATION_ID/);
  expect(csvLines).toHaveLength(3);
  expect(csvLines[2]).toContain('"{""email"":""b@example.com""}"');
  expect(table.code).toBe(0);
  expect(table.stdout).toContain('actor        admin-7');
  expect(table.stdout).toContain('trace        trace-UserEmailChanged');
  expect(table.stdout).toMatch(/before +\{.*"email":"a@example.com".*\n +after +\{.*"email":"b@example.com"/);
  expect(JSON.parse(at.stdout).events.map((e: { aggregate_version: number }) => e.aggregate_version)).toEqual([1]);
  expect(none.code).toBe(1);
  expect(none.lines).toEqual(['outbox: no events for user/nobody in schema "outbox"']);
});

test('audit verify: all chains and one aggregate', async () => {
  const [all, one] = await Promise.all([runOutbox(['audit', 'verify', '--json'], env()), runOutbox(['audit', 'verify', '--aggregate', 'user/u1'], env())]);
  expect(all.stderr).toBe('');
  expect(all.code).toBe(0);
  expect(JSON.parse(all.stdout)).toMatchObject({ ok: true, checked: 3 });
  expect(one.code).toBe(0);
  expect(one.stdout).toMatch(/^chain verified: 2 event\(s\) of user\/u1, \d+ events\/s/);
});
