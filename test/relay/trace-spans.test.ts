import { SpanKind, trace } from '@opentelemetry/api';
import { startProjector, type RunningProjector } from '../../projector';
import { startRelay } from '../../relay';
import { appendEvents, withTransaction } from '../../writer';
import { createLogger } from '../../core/logger';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { relayEnv } from '../support/relay-env';
import { useInMemoryTracing } from '../support/tracing';
import { createTopics, readTopics } from '../support/kafka';

// One request's trace, end to end, with the OpenTelemetry SDK registered as an application would:
// request span → outbox insert (traceparent stored) → relay `send <topic>` producer span (child of the
// request; its context goes in the record's traceparent header) → projector `process <topic>` consumer
// span (child of the producer span) around the handler's transaction.
const db = useTestDatabase();
const tracing = useInMemoryTracing();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

test('request → insert → publish → project share one trace, each span the child of the one before', async () => {
  const topic = uniqueName('traced');
  const env = relayEnv(db.url, topic, { OUTBOX_PROJECTOR_BATCH_SIZE: '50' });
  const config = loadConfig(env, { database: true, kafka: true, registry: true });
  const kafka = createKafka(config.kafka, logger);
  await createTopics(kafka, [topic], 3);

  const tracer = trace.getTracer('orders-service');
  const request = await tracer.startActiveSpan('POST /users/:id/email', { kind: SpanKind.SERVER }, async (span) => {
    await withTransaction(db.pool, (c) =>
      appendEvents(c, [
        {
          aggregateType: 'user',
          aggregateId: 'traced-1',
          eventType: 'UserRegistered',
          schemaVersion: 1,
          payload: { email: 'a@example.com', name: 'Ada Lovelace' },
          actorId: 'user:1',
          traceId: 'req-traced',
        },
      ]),
    );
    span.end();
    return span.spanContext();
  });

  const relay = startRelay({ config, logger });
  let projector: RunningProjector | undefined;
  try {
    projector = await startProjector({ config, logger, groupIdPrefix: uniqueName('g'), sessionTimeoutMs: 6000 });
    const deadline = Date.now() + 60_000;
    const find = () => tracing.spans().find((s) => s.name === `process ${topic}` && s.attributes['kafka_outbox.projection'] === 'audit_log');
    while (!find() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  } finally {
    await projector?.stop();
    await relay.stop();
  }

  const send = tracing.spans().find((s) => s.name === `send ${topic}`);
  expect(send).toBeDefined();
  expect(send!.kind).toBe(SpanKind.PRODUCER);
  expect(send!.spanContext().traceId).toBe(request.traceId);
  expect(send!.parentSpanContext?.spanId).toBe(request.spanId);
  expect(send!.attributes).toMatchObject({
    'messaging.system': 'kafka',
    'messaging.operation.type': 'send',
    'messaging.destination.name': topic,
    'messaging.kafka.message.key': 'traced-1',
  });
  expect(typeof send!.attributes['messaging.kafka.offset']).toBe('number');

  const [record] = (await readTopics(kafka, [topic])).filter((m) => m.message.key?.toString() === 'traced-1');
  expect(record?.message.headers?.traceparent?.toString()).toBe(`00-${send!.spanContext().traceId}-${send!.spanContext().spanId}-01`);

  const processed = tracing.spans().filter((s) => s.name === `process ${topic}`);
  expect(processed.length).toBeGreaterThanOrEqual(1);
  for (const p of processed) {
    expect(p.kind).toBe(SpanKind.CONSUMER);
    expect(p.spanContext().traceId).toBe(request.traceId);
    expect(p.parentSpanContext?.spanId).toBe(send!.spanContext().spanId);
    expect(p.attributes).toMatchObject({ 'messaging.operation.type': 'process', 'messaging.destination.name': topic });
  }
}, 120_000);
