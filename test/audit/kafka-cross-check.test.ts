import { createHash, randomUUID } from 'node:crypto';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { createLogger } from '../../core/logger';
import { startRelay } from '../../relay';
import { childEnv, emptyEnvFile, runOutbox } from '../cli/run-outbox';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { INSERT_EVENT, relayConfig } from '../support/relay-env';
import { ownerRewrite } from './owner-rewrite';

// The comparison of the history with what the relay already published, with no checkpoint taken: the
// real relay publishes to a topic of this file's own, then the owner rewrites the history.
const db = useTestDatabase({ poolSize: 2 });
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const ENV_FILE = emptyEnvFile();
let topic = '';
const env = () =>
  childEnv({ OUTBOX_ENV_FILE: ENV_FILE, DATABASE_URL: db.url, KAFKA_BROKERS: process.env.KAFKA_BROKERS!, OUTBOX_TOPIC_MAP: `user=${topic}`, OUTBOX_TOPIC_SUFFIX: `.${topic}` });

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 45_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  topic = uniqueName('audit');
  for (const [id, n] of [
    ['a', 5],
    ['b', 2],
  ] as const) {
    for (let i = 0; i < n; i++) await db.pool.query(INSERT_EVENT, [id, `${id}-${i}@example.com`, `corr-${id}-${i}`]);
  }
  const relay = startRelay({ config: relayConfig(db.url, topic), logger });
  try {
    await waitUntil('delivered', async () => (await db.pool.query('SELECT 1 FROM outbox_delivery WHERE delivered_at IS NULL')).rowCount === 0);
  } finally {
    await relay.stop();
  }
});

test('with nothing changed, every published event matches its row', async () => {
  const r = await runOutbox(['audit', 'verify'], env());
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(`published events match: 7 event(s) compared with ${topic}`);
});

test('messages of another outbox on the same topic (unknown event ids continuing no chain of this history) are ignored', async () => {
  const kafka = new Kafka({ brokers: process.env.KAFKA_BROKERS!.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  try {
    const v1 = createHash('sha256').update('foreign v1').digest('hex');
    const v2 = createHash('sha256').update('foreign v2').digest('hex');
    const headers = (version: number, hash: string, prev: string) => ({
      event_id: randomUUID(),
      aggregate_type: 'user',
      aggregate_id: 'a',
      aggregate_version: String(version),
      hash,
      prev_hash: prev,
      event_type: 'UserEmailChanged',
      schema_version: '1',
    });
    await producer.send({
      topic,
      acks: -1,
      messages: [
        { key: 'a', value: 'x', headers: headers(1, v1, '0'.repeat(64)) },
        { key: 'a', value: 'x', headers: headers(2, v2, v1) },
      ],
    });
  } finally {
    await producer.disconnect();
  }
  const r = await runOutbox(['audit', 'verify'], env());
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('published events match: 7 event(s) compared');
});

test('a rewrite after publication is found with no checkpoint: the first differing aggregate and version, and what differs', async () => {
  await ownerRewrite(db.pool, { schema: 'outbox', aggregateType: 'user', aggregateId: 'a' });
  const chainOnly = await runOutbox(['audit', 'verify', '--no-kafka'], env());
  expect(chainOnly.code).toBe(0);
  expect(chainOnly.stdout).toMatch(/^chain verified: 6 event\(s\)/);

  const r = await runOutbox(['audit', 'verify'], env());
  expect(r.code).toBe(1);
  expect(r.stdout).toContain('chain verified: 6 event(s)');
  expect(r.stdout).toContain('published events DIFFER: 3 difference(s)');
  expect(r.lines).toEqual([
    expect.stringMatching(
      new RegExp(
        `^outbox: published event differs at user/a v3 \\(event [0-9a-f-]{36}, ${topic}/\\d+@\\d+\\): payload hash: published hash [0-9a-f]{64}, stored hash [0-9a-f]{64}$`,
      ),
    ),
  ]);

  const j = await runOutbox(['audit', 'verify', '--json'], env());
  expect(j.code).toBe(1);
  const result = JSON.parse(j.stdout) as { ok: boolean; chainOk: boolean; kafka: { differences: Array<{ aggregateId: string; version: number; kind: string }> } };
  expect(result.ok).toBe(false);
  expect(result.chainOk).toBe(true);
  expect(result.kafka.differences.map((d) => `${d.aggregateId} v${d.version} ${d.kind}`)).toEqual(['a v3 payload hash', 'a v4 payload hash', 'a v5 missing version']);
});

test('with Kafka unreachable, verify fails with one line naming the brokers instead of skipping the comparison', async () => {
  const r = await runOutbox(['audit', 'verify'], { ...env(), KAFKA_BROKERS: '127.0.0.1:1' });
  expect(r.code).toBe(1);
  expect(r.lines).toEqual([expect.stringMatching(/^outbox: Kafka at 127\.0\.0\.1:1 is unreachable/)]);
});
