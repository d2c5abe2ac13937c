import { loadConfig, type Env } from '../../core/config';
import { isOutboxError } from '../../core/errors';
import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { topicFor } from '../../core/topics';
import { startRelay } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { relayConfig } from '../support/relay-env';

// Where and how events are published: the topic template beside the explicit map, the record
// timestamp (the event's occurred_at), and opt-in CloudEvents binary-mode headers.
const db = useTestDatabase();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

function configError(env: Env): string {
  try {
    loadConfig({ OUTBOX_ENV_FILE: '/dev/null', ...env });
  } catch (err) {
    if (isOutboxError(err, 'CONFIG_INVALID')) return err.message;
    throw err;
  }
  return 'no error';
}

test('topic names: the explicit map first, then OUTBOX_TOPIC_TEMPLATE, then the suffix; invalid templates refused', () => {
  const relay = (env: Env) => loadConfig({ OUTBOX_ENV_FILE: '/dev/null', ...env }).relay;
  expect(topicFor('invoice', relay({}))).toBe('invoice.events');
  expect(topicFor('invoice', relay({ OUTBOX_TOPIC_TEMPLATE: 'billing.{aggregate_type}.v1' }))).toBe('billing.invoice.v1');
  expect(topicFor('in voice', relay({ OUTBOX_TOPIC_TEMPLATE: '{aggregate_type}-events' }))).toBe('in_voice-events');
  expect(topicFor('invoice', relay({ OUTBOX_TOPIC_TEMPLATE: 'all-events' }))).toBe('all-events');
  expect(topicFor('invoice', relay({ OUTBOX_TOPIC_TEMPLATE: 'billing.{aggregate_type}', OUTBOX_TOPIC_MAP: 'invoice=invoices' }))).toBe('invoices');
  expect(topicFor('order', relay({ OUTBOX_TOPIC_TEMPLATE: 'billing.{aggregate_type}', OUTBOX_TOPIC_MAP: 'invoice=invoices' }))).toBe('billing.order');
  expect(topicFor('order', relay({ OUTBOX_TOPIC_SUFFIX: '-log' }))).toBe('order-log');
  expect(configError({ OUTBOX_TOPIC_TEMPLATE: 'x/{aggregate_type}' })).toMatch(/OUTBOX_TOPIC_TEMPLATE must be topic-name characters/);
  expect(configError({ OUTBOX_TOPIC_TEMPLATE: '{aggregate}.events' })).toMatch(/OUTBOX_TOPIC_TEMPLATE must be topic-name characters/);
  expect(configError({ OUTBOX_TOPIC_TEMPLATE: '{aggregate_type}.events', OUTBOX_TOPIC_SUFFIX: '.x' })).toMatch(/both set/);
  expect(configError({ OUTBOX_CLOUDEVENTS_SOURCE: '/billing' })).toMatch(/OUTBOX_CLOUDEVENTS is not true/);
  expect(relay({ OUTBOX_CLOUDEVENTS: 'true' }).cloudEvents).toEqual({ source: '/kafka-outbox/outbox' });
  expect(relay({}).cloudEvents).toBeUndefined();
});

test('records go to the templated topic, carry occurred_at as their timestamp, and CloudEvents headers only when asked', async () => {
  const prefix = uniqueName('routing');
  const insert = async (aggregateId: string, occurredAt: string): Promise<{ eventId: string }> => {
    const { rows } = await db.pool.query<{ event_id: string }>(
      `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, occurred_at)
       VALUES ('user', $1, 'UserEmailChanged', 1, jsonb_build_object('email', $1 || '@example.com'), 'user:test', 'trace-routing', $2::timestamptz)
       RETURNING event_id::text`,
      [aggregateId, occurredAt],
    );
    return { eventId: rows[0]!.event_id };
  };
  const run = async (env: Record<string, string>): Promise<void> => {
    // No explicit map for `user`: the template decides.
    const config = relayConfig(db.url, prefix, { OUTBOX_TOPIC_MAP: '', OUTBOX_TOPIC_SUFFIX: '', ...env });
    const relay = startRelay({ config, logger });
    try {
      const deadline = Date.now() + 45_000;
      while ((await db.pool.query('SELECT 1 FROM outbox_delivery WHERE delivered_at IS NULL')).rowCount !== 0) {
        if (Date.now() > deadline) throw new Error('not delivered in time');
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await relay.stop();
    }
  };
  const kafka = createKafka(relayConfig(db.url, prefix).kafka, logger);

  const plain = await insert('p1', '2021-03-04T05:06:07.089Z');
  await run({ OUTBOX_TOPIC_TEMPLATE: `${prefix}.{aggregate_type}.plain` });
  const [p] = await readTopics(kafka, [`${prefix}.user.plain`], { count: 1 });
  expect(p!.message.headers?.event_id?.toString()).toBe(plain.eventId);
  expect(p!.message.timestamp).toBe(String(Date.parse('2021-03-04T05:06:07.089Z')));
  expect(Object.keys(p!.message.headers ?? {}).filter((h) => h.startsWith('ce_') || h === 'content-type')).toEqual([]);

  const ce = await insert('c1', '2022-05-06T07:08:09.123Z');
  await run({ OUTBOX_TOPIC_TEMPLATE: `${prefix}.{aggregate_type}.ce`, OUTBOX_CLOUDEVENTS: 'true', OUTBOX_CLOUDEVENTS_SOURCE: '/users-service' });
  const [c] = await readTopics(kafka, [`${prefix}.user.ce`], { count: 1 });
  const headers = Object.fromEntries(Object.entries(c!.message.headers ?? {}).map(([k, v]) => [k, v?.toString()]));
  expect(headers).toMatchObject({
    ce_specversion: '1.0',
    ce_id: ce.eventId,
    ce_source: '/users-service',
    ce_type: 'UserEmailChanged',
    ce_time: '2022-05-06T07:08:09.123Z',
    ce_subject: 'user/c1',
    'content-type': 'application/avro',
    event_id: ce.eventId,
  });
  expect(c!.message.timestamp).toBe(String(Date.parse('2022-05-06T07:08:09.123Z')));
});
