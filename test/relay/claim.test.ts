import { loadConfig } from '../../core/config';
import { isOutboxError } from '../../core/errors';
import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { startRelay } from '../../relay';
import { claimBatch, claimPending } from '../../relay/claim-batch';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { relayConfig } from '../support/relay-env';

// What a claim takes from the delivery queue: aggregate versions past 2^31 exactly, and no more than
// the byte budget of payload (OUTBOX_RELAY_BATCH_BYTES) however many events the count would allow.
const db = useTestDatabase();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

async function insert(aggregateId: string, name: string): Promise<string> {
  const { rows } = await db.pool.query<{ id: string }>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     VALUES ('user', $1, 'UserRegistered', 1, jsonb_build_object('email', $1 || '@example.com', 'name', $2::text), 'user:test', 'trace-claim')
     RETURNING id::text`,
    [aggregateId, name],
  );
  return rows[0]!.id;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

afterEach(async () => {
  await db.pool.query('UPDATE outbox_delivery SET delivered_at = clock_timestamp() WHERE delivered_at IS NULL');
});

test('an aggregate version past 2^31 is claimed and published exactly', async () => {
  await insert('old-aggregate', 'first');
  // An aggregate with a long history: its newest stored event and its head are moved past 2^31 (as years
  // of events would; the history's append-only triggers are bypassed for this session only).
  const c = await db.pool.connect();
  try {
    await c.query(`BEGIN; SET LOCAL session_replication_role = replica`);
    await c.query(`UPDATE outbox SET aggregate_version = 2147483653 WHERE aggregate_type = 'user' AND aggregate_id = 'old-aggregate'`);
    await c.query(`UPDATE outbox_delivery SET aggregate_version = 2147483653 WHERE aggregate_type = 'user' AND aggregate_id = 'old-aggregate'`);
    await c.query(`UPDATE outbox_aggregates SET version = 2147483653 WHERE aggregate_type = 'user' AND aggregate_id = 'old-aggregate'`);
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  const id = await insert('old-aggregate', 'second');
  const claimed = await claimBatch(db.pool, { schema: 'outbox', limit: 10 });
  expect(claimed.find((e) => e.id === id)?.aggregateVersion).toBe(2147483654);

  const topic = uniqueName('claim');
  const config = relayConfig(db.url, topic);
  const relay = startRelay({ config, logger });
  try {
    await waitUntil('delivered', async () => (await db.pool.query('SELECT 1 FROM outbox_delivery WHERE delivered_at IS NULL')).rowCount === 0);
  } finally {
    await relay.stop();
  }
  const messages = await readTopics(createKafka(config.kafka, logger), [topic], { count: 2 });
  expect(messages.map((m) => m.message.headers?.aggregate_version?.toString())).toEqual(['2147483653', '2147483654']);
});

test('a claim stops at the byte budget (at least one event), in id order, and says it was cut short', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) ids.push(await insert(`b${i % 3}`, String(i).repeat(1000)));
  const { rows } = await db.pool.query<{ id: string; bytes: number }>(
    'SELECT id::text, octet_length(payload::text) AS bytes FROM outbox WHERE id = ANY($1::bigint[]) ORDER BY id',
    [ids],
  );
  const budget = 3500;
  const claim = await claimPending(db.pool, { schema: 'outbox', limit: 100, maxBytes: budget });
  const n = claim.events.length;
  expect(claim.events.map((e) => e.id)).toEqual(ids.slice(0, n));
  const before = rows.slice(0, n - 1).reduce((a, r) => a + r.bytes, 0);
  expect(before).toBeLessThan(budget); // every claimed event started below the budget
  expect(before + rows[n - 1]!.bytes + rows[n]!.bytes).toBeGreaterThan(budget); // the next one would not
  expect(n).toBeLessThan(10);
  expect(claim.full).toBe(true);

  const one = await claimPending(db.pool, { schema: 'outbox', limit: 100, maxBytes: 10 });
  expect(one.events.map((e) => e.id)).toEqual([ids[0]]);
  const all = await claimPending(db.pool, { schema: 'outbox', limit: 100 });
  expect(all.events).toHaveLength(10);
  expect(all.full).toBe(false);
  const counted = await claimPending(db.pool, { schema: 'outbox', limit: 10 });
  expect(counted.full).toBe(true);
});

test('a relay with a small byte budget delivers a backlog in order, batch after batch', async () => {
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) ids.push(await insert(`r${i % 4}`, 'x'.repeat(2000)));
  const topic = uniqueName('claimbytes');
  const config = relayConfig(db.url, topic, { OUTBOX_RELAY_BATCH_BYTES: '5000', OUTBOX_TOPIC_PARTITIONS: '1', OUTBOX_RELAY_POLL_INTERVAL: '60s' });
  expect(config.relay.batchBytes).toBe(5000);
  const relay = startRelay({ config, logger });
  try {
    // A poll interval of a minute: only claims that follow each other (a cut-short claim is followed at once) deliver it all.
    await waitUntil('delivered', async () => (await db.pool.query('SELECT 1 FROM outbox_delivery WHERE delivered_at IS NULL')).rowCount === 0, 30_000);
  } finally {
    await relay.stop();
  }
  const { rows } = await db.pool.query<{ event_id: string }>('SELECT event_id::text FROM outbox WHERE id = ANY($1::bigint[]) ORDER BY id', [ids]);
  const messages = await readTopics(createKafka(config.kafka, logger), [topic], { count: 30 });
  expect(messages.map((m) => m.message.headers?.event_id?.toString())).toEqual(rows.map((r) => r.event_id));
});

test('OUTBOX_RELAY_BATCH_BYTES: default 16 MiB, validated', () => {
  expect(loadConfig({ OUTBOX_ENV_FILE: '/dev/null' }).relay.batchBytes).toBe(16 * 1024 * 1024);
  expect(loadConfig({ OUTBOX_RELAY_BATCH_BYTES: '65536' }).relay.batchBytes).toBe(65536);
  for (const bad of ['12', 'lots', '-5']) {
    let caught: unknown;
    try {
      loadConfig({ OUTBOX_RELAY_BATCH_BYTES: bad });
    } catch (err) {
      caught = err;
    }
    expect(isOutboxError(caught, 'CONFIG_INVALID') && /OUTBOX_RELAY_BATCH_BYTES/.test(caught.message)).toBe(true);
  }
});
