import { randomUUID } from 'node:crypto';
import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { createRegistry } from '../support/registry-client';
import { loadCatalog, type SchemaCatalog } from '../../schemas/catalog';
import { createEventDecoder } from '../../schemas/decode-event';
import { createEventEncoder, type OutboxEventForEncoding } from '../../schemas/encode-event';
import { registerSchemas } from '../../schemas/register-schemas';
import { createUpcasterRegistry } from '../../schemas/upcasters';
import { uniqueName } from '../support/isolation';
import { createTopics, readTopics } from '../support/kafka';

// Encoding and decoding against the real registry. Every test registers under its own namespace
// (subjects `<unique>.user.<EventType>`), never the project's real subjects.
const config = loadConfig(process.env, { registry: true, kafka: true });
const logger = silentLogger();

function freshCatalog(): SchemaCatalog {
  return loadCatalog(undefined, { namespace: uniqueName('ns') });
}

let seq = 0;
function event(eventType: string, schemaVersion: number, payload: unknown, overrides: Partial<OutboxEventForEncoding> = {}): OutboxEventForEncoding {
  seq += 1;
  return {
    eventId: randomUUID(),
    eventType,
    schemaVersion,
    aggregateType: 'user',
    aggregateId: 'user-1',
    aggregateVersion: seq,
    occurredAt: '2024-05-06T07:08:09.123456Z',
    actorId: 'actor-7',
    traceId: 'trace-9',
    correlationId: 'corr-1',
    causationId: null,
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    hash: Buffer.alloc(32, seq),
    prevHash: Buffer.alloc(32, seq - 1),
    payload,
    ...overrides,
  };
}

test('encode: Confluent wire format that a plain Confluent deserializer decodes, with every envelope field', async () => {
  const catalog = freshCatalog();
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger });
  await encoder.prepare();
  const e = event('UserRegistered', 1, { email: 'ada@example.com', name: 'Ada Lovelace' });
  const r = await encoder.encode(e);
  if (!r.ok) throw new Error(r.reason);
  expect(r.value[0]).toBe(0);
  expect(r.value.readInt32BE(1)).toBe(r.schemaId);
  expect(encoder.schemaIdOf('UserRegistered', 1)).toBe(r.schemaId);

  // The standard deserializer: it reads only the value, fetches the schema by id.
  const plain = createRegistry(config.registry);
  const decoded = (await plain.decode(r.value)) as Record<string, unknown>;
  expect(decoded).toEqual({
    event_id: e.eventId,
    event_type: 'UserRegistered',
    schema_version: 1,
    aggregate_type: 'user',
    aggregate_id: 'user-1',
    aggregate_version: e.aggregateVersion,
    occurred_at: Date.parse('2024-05-06T07:08:09Z') * 1000 + 123456,
    actor_id: 'actor-7',
    trace_id: 'trace-9',
    correlation_id: 'corr-1',
    causation_id: null,
    traceparent: e.traceparent,
    hash: (e.hash as Buffer).toString('hex'),
    prev_hash: (e.prevHash as Buffer).toString('hex'),
    payload: { email: 'ada@example.com', name: 'Ada Lovelace' },
  });
  // The registered schema's full name is the subject (RecordNameStrategy).
  const subject = catalog.get('UserRegistered', 1)!.subject;
  expect(await plain.getLatestSchemaId(subject)).toBe(r.schemaId);
});

test('encode: a payload that does not fit its version is invalid_payload with the field path', async () => {
  const encoder = createEventEncoder({ registry: config.registry, catalog: freshCatalog(), logger });
  await encoder.prepare();
  const cases: [OutboxEventForEncoding, string][] = [
    [event('UserRegistered', 1, { email: null, name: 'Ada' }), 'email: expected string, got null'],
    [event('UserRegistered', 1, { email: 'a@b' }), 'name: expected string, got nothing (field missing)'],
    [event('UserRegistered', 1, { email: 42, name: 'Ada' }), 'email: expected string, got number 42'],
    // A v2 payload declared as v1: the v1 field is missing and the v2 fields are not v1's.
    [event('UserEmailChanged', 1, { new_email: 'a@b', verified: true }), 'email: expected string, got nothing (field missing)'],
    [event('UserEmailChanged', 1, { new_email: 'a@b', verified: true }), 'new_email: not a field of'],
    [event('UserEmailChanged', 2, { new_email: 'a@b', verified: 'yes' }), 'verified: expected boolean, got string "yes"'],
    [event('UserDeactivated', 1, 'left'), '(value): expected record outbox'],
    [event('UserRegistered', 1, { email: 'a@b', name: 'A' }, { aggregateVersion: 'x' as unknown as number }), 'aggregate_version: expected a whole number'],
    [event('UserRegistered', 1, { email: 'a@b', name: 'A' }, { occurredAt: 'yesterday' }), 'occurred_at: expected a timestamp'],
    [event('UserRegistered', 1, { email: 'a@b', name: 'A' }, { eventId: 5 as unknown as string }), 'event_id: expected string, got number 5'],
  ];
  for (const [e, reason] of cases) {
    const r = await encoder.encode(e);
    expect(r).toMatchObject({ ok: false, kind: 'invalid_payload' });
    expect(r.ok ? '' : r.reason).toContain(reason.replace('(value): expected record outbox', '(value): expected record'));
  }
  // A payload that leaves out a field its schema defaults is refused, naming the field: decoding would
  // fill the default in, and the event's hash (over the payload as written) could not be verified.
  const omitted = await encoder.encode(event('UserEmailChanged', 2, { new_email: 'a@b' }));
  expect(omitted).toMatchObject({ ok: false, kind: 'invalid_payload' });
  expect(omitted.ok ? '' : omitted.reason).toMatch(/^verified: missing; UserEmailChanged v2 gives it a default/);
  const both = await encoder.encode(event('UserRenamed', 2, {}));
  expect(both.ok ? '' : both.reason).toMatch(/^first_name, last_name: missing;/);
  // Written explicitly, even with the default's value, it encodes.
  const explicit = await encoder.encode(event('UserEmailChanged', 2, { new_email: 'a@b', verified: false }));
  expect(explicit.ok).toBe(true);
});

test('encode: an unknown event type or version is unknown_schema', async () => {
  const catalog = freshCatalog();
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger });
  await encoder.prepare();
  expect(await encoder.encode(event('UserFoo', 1, {}))).toEqual({
    ok: false,
    kind: 'unknown_schema',
    reason: `unknown event type UserFoo v1: user/UserFoo.v1.avsc not found in ${catalog.dir}`,
  });
  expect(await encoder.encode(event('UserRenamed', 3, {}))).toEqual({
    ok: false,
    kind: 'unknown_schema',
    reason: `unknown event type UserRenamed v3 (known versions: 1..2): user/UserRenamed.v3.avsc not found in ${catalog.dir}`,
  });
  const wrongAggregate = await encoder.encode(event('UserRenamed', 1, { name: 'x' }, { aggregateType: 'order' }));
  expect(wrongAggregate).toMatchObject({ ok: false, kind: 'unknown_schema' });
});

test('encode without prepare registers on demand; autoRegister=false reports unregistered schemas', async () => {
  const catalog = freshCatalog();
  const strict = createEventEncoder({ registry: config.registry, catalog, logger, autoRegister: false });
  const refused = await strict.encode(event('UserRenamed', 2, { first_name: 'A', last_name: 'B' }));
  expect(refused).toMatchObject({ ok: false, kind: 'unknown_schema' });
  expect(refused.ok ? '' : refused.reason).toMatch(/not registered.*outbox schemas register/);

  const lazy = createEventEncoder({ registry: config.registry, catalog, logger });
  const r = await lazy.encode(event('UserRenamed', 2, { first_name: 'A', last_name: 'B' }));
  expect(r.ok).toBe(true);
  // v1 was registered first, so the subject's versions stay in order.
  const plain = createRegistry(config.registry);
  const subject = catalog.get('UserRenamed', 1)!.subject;
  const v1 = await plain.getRegistryId(subject, 1);
  const v2 = await plain.getRegistryId(subject, 2);
  expect(r.ok && r.schemaId).toBe(v2);
  expect(v1).not.toBe(v2);
});

test('ids are stable: registering the same schemas twice gives the same ids', async () => {
  const catalog = freshCatalog();
  const first = await registerSchemas({ registry: config.registry, catalog, logger });
  const second = await registerSchemas({ registry: config.registry, catalog, logger });
  expect(first.ok && second.ok).toBe(true);
  expect(first.registered).toHaveLength(6);
  expect(second.registered.map((s) => s.id)).toEqual(first.registered.map((s) => s.id));
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger, autoRegister: false });
  await encoder.prepare();
  for (const s of first.registered) expect(encoder.schemaIdOf(s.eventType, s.version)).toBe(s.id);
  // The compatibility level was set on each subject.
  const plain = createRegistry(config.registry);
  expect(await plain.getLatestSchemaId(catalog.latest('UserRenamed')!.subject)).toBe(first.registered.find((s) => s.eventType === 'UserRenamed' && s.version === 2)!.id);
});

test('v1 and v2 events interleaved in one topic decode to the latest shape (alias, default, upcaster)', async () => {
  const catalog = freshCatalog();
  await registerSchemas({ registry: config.registry, catalog, logger });
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger });
  await encoder.prepare();
  const events = [
    event('UserRegistered', 1, { email: 'ada@example.com', name: 'Ada Lovelace' }),
    event('UserEmailChanged', 1, { email: 'ada@old.example' }),
    event('UserRenamed', 1, { name: 'Augusta Ada King' }),
    event('UserEmailChanged', 2, { new_email: 'ada@new.example', verified: true }),
    event('UserRenamed', 2, { first_name: 'Ada', last_name: 'Lovelace' }),
    event('UserEmailChanged', 1, { email: 'ada@v1-again.example' }),
    event('UserRenamed', 1, { name: 'Ada' }),
    event('UserDeactivated', 1, { reason: 'left' }),
  ];
  const kafka = createKafka(config.kafka, logger);
  const topic = uniqueName('user_events');
  await createTopics(kafka, [topic]);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    const messages = [];
    for (const e of events) {
      const r = await encoder.encode(e);
      if (!r.ok) throw new Error(r.reason);
      messages.push({ key: e.aggregateId, value: r.value, headers: { event_type: e.eventType, schema_version: String(e.schemaVersion) } });
    }
    await producer.send({ topic, acks: -1, messages });
  } finally {
    await producer.disconnect();
  }
  const read = await readTopics(kafka, [topic], { count: events.length });
  const decoder = createEventDecoder({ registry: config.registry, catalog, logger });
  const decoded = [];
  for (const m of read) {
    const r = await decoder.decode(m.message.value!);
    if (!r.ok) throw new Error(r.reason);
    decoded.push(r.event);
  }
  expect(decoded.map((d) => [d.eventType, d.writerSchemaVersion, d.schemaVersion, d.payload])).toEqual([
    ['UserRegistered', 1, 1, { email: 'ada@example.com', name: 'Ada Lovelace' }],
    ['UserEmailChanged', 1, 2, { new_email: 'ada@old.example', verified: false }],
    ['UserRenamed', 1, 2, { first_name: 'Augusta', last_name: 'Ada King' }],
    ['UserEmailChanged', 2, 2, { new_email: 'ada@new.example', verified: true }],
    ['UserRenamed', 2, 2, { first_name: 'Ada', last_name: 'Lovelace' }],
    ['UserEmailChanged', 1, 2, { new_email: 'ada@v1-again.example', verified: false }],
    ['UserRenamed', 1, 2, { first_name: 'Ada', last_name: '' }],
    ['UserDeactivated', 1, 1, { reason: 'left' }],
  ]);
  const first = decoded[0]!;
  expect(first).toMatchObject({
    eventId: events[0]!.eventId,
    aggregateType: 'user',
    aggregateId: 'user-1',
    aggregateVersion: events[0]!.aggregateVersion,
    occurredAt: new Date('2024-05-06T07:08:09.123Z'),
    occurredAtMicros: Date.parse('2024-05-06T07:08:09Z') * 1000 + 123456,
    actorId: 'actor-7',
    traceId: 'trace-9',
    correlationId: 'corr-1',
    causationId: null,
    traceparent: events[0]!.traceparent,
  });
  expect(first.hash.equals(events[0]!.hash as Buffer)).toBe(true);
  expect(first.prevHash.equals(events[0]!.prevHash as Buffer)).toBe(true);
  // The typed union narrows on eventType.
  const renamed = decoded.find((d) => d.eventType === 'UserRenamed');
  if (renamed?.eventType === 'UserRenamed') expect(typeof renamed.payload.first_name).toBe('string');

  // Without the upcaster, Avro resolution alone cannot derive the names (it yields the defaults):
  // that is why UserRenamed v1->v2 needs code.
  const noUpcasters = createEventDecoder({ registry: config.registry, catalog, upcasters: createUpcasterRegistry(), logger });
  const v1Renamed = await noUpcasters.decode(read[2]!.message.value!);
  expect(v1Renamed.ok && v1Renamed.event.payload).toEqual({ first_name: '', last_name: '' });
});

test('decode: bad input is a returned value', async () => {
  const catalog = freshCatalog();
  const decoder = createEventDecoder({ registry: config.registry, catalog, logger });
  expect(await decoder.decode(Buffer.from([1, 0, 0, 0, 1, 2]))).toMatchObject({ ok: false, kind: 'bad_magic' });
  expect(await decoder.decode(Buffer.from([0, 0]))).toMatchObject({ ok: false, kind: 'bad_magic' });
  expect(await decoder.decode(Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0, 2]))).toMatchObject({ ok: false, kind: 'unknown_schema_id' });

  // A schema of some other producer: registered, but not an event type of this catalog.
  const plain = createRegistry(config.registry);
  const foreign = JSON.stringify({ type: 'record', name: 'Other', namespace: uniqueName('foreign'), fields: [{ name: 'a', type: 'string' }] });
  const { id } = await plain.register({ type: SchemaType.AVRO, schema: foreign }, { subject: uniqueName('foreign_subject') });
  const r = await decoder.decode(await plain.encode(id, { a: 'x' }));
  expect(r).toMatchObject({ ok: false, kind: 'unknown_schema_id' });
  expect(r.ok ? '' : r.reason).toMatch(/not an event type/);

  // Truncated body.
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger });
  const good = await encoder.encode(event('UserDeactivated', 1, { reason: 'left' }));
  if (!good.ok) throw new Error(good.reason);
  expect(await decoder.decode(good.value.subarray(0, good.value.length - 3))).toMatchObject({ ok: false, kind: 'undecodable' });
  expect(await decoder.decode(good.value)).toMatchObject({ ok: true });
});

test('an unreachable registry throws REGISTRY_UNAVAILABLE (transient) from encode and decode', async () => {
  const down = { url: 'http://127.0.0.1:1/apis/ccompat/v7' };
  const catalog = freshCatalog();
  const encoder = createEventEncoder({ registry: down, catalog, logger });
  await expect(encoder.prepare()).rejects.toMatchObject({ name: 'OutboxError', code: 'REGISTRY_UNAVAILABLE' });
  await expect(encoder.encode(event('UserDeactivated', 1, { reason: 'x' }))).rejects.toMatchObject({ name: 'OutboxError', code: 'REGISTRY_UNAVAILABLE' });
  const decoder = createEventDecoder({ registry: down, catalog, logger });
  await expect(decoder.decode(Buffer.from([0, 0, 0, 0, 1, 2]))).rejects.toMatchObject({ name: 'OutboxError', code: 'REGISTRY_UNAVAILABLE' });
});
