import { randomUUID } from 'node:crypto';
import type { Kafka, Producer, ProducerConfig } from 'kafkajs';
import { loadConfig, type OutboxConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import type { Logger } from '../../core/logger';
import { loadCatalog, type SchemaCatalog } from '../../schemas/catalog';
import { createEventEncoder, type EventEncoder, type OutboxEventForEncoding } from '../../schemas/encode-event';
import { canonicalJsonb, computeHash, ZERO_HASH } from '../../event';
import type { Projection } from '../../projector';
import { uniqueName } from '../support/isolation';

/** Test configuration for a per-file database. */
export function testConfig(databaseUrl: string, overrides: Record<string, string> = {}): OutboxConfig {
  return loadConfig({ ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'silent', ...overrides }, { database: true, kafka: true, registry: true });
}

/** A catalog under a namespace of its own (subjects of this test file only). */
export function testCatalog(namespace: string): SchemaCatalog {
  return loadCatalog(undefined, { namespace });
}

export async function testEncoder(config: OutboxConfig, catalog: SchemaCatalog, logger: Logger): Promise<EventEncoder> {
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger });
  await encoder.prepare();
  return encoder;
}

export interface TestEvent extends OutboxEventForEncoding {
  payload: Record<string, unknown>;
}

/** Builds users' event streams with a valid hash chain, like the writer would. */
export class UserStreams {
  private heads = new Map<string, { version: number; hash: Buffer }>();
  private clock = Date.UTC(2025, 0, 1);

  event(userId: string, eventType: string, schemaVersion: number, payload: Record<string, unknown>): TestEvent {
    const head = this.heads.get(userId) ?? { version: 0, hash: ZERO_HASH };
    const version = head.version + 1;
    this.clock += 1;
    const e = {
      eventId: randomUUID(),
      eventType,
      schemaVersion,
      aggregateType: 'user',
      aggregateId: userId,
      aggregateVersion: version,
      occurredAt: new Date(this.clock),
      actorId: 'test-actor',
      traceId: randomUUID().replace(/-/g, ''),
      correlationId: null,
      causationId: null,
      traceparent: null,
      prevHash: head.hash,
      payload,
    };
    const hash = computeHash(head.hash, { ...e, payload: canonicalJsonb(payload) });
    this.heads.set(userId, { version, hash });
    return { ...e, hash };
  }

  /** A realistic life of a user: registration, then email changes (v1/v2) and renames (v1/v2), sometimes a deactivation. */
  life(userId: string, events: number, rnd: () => number = Math.random): TestEvent[] {
    const out: TestEvent[] = [this.event(userId, 'UserRegistered', 1, { email: `${userId}@example.com`, name: `First${userId} Last${userId}` })];
    for (let i = 1; i < events; i++) {
      const r = rnd();
      if (i === events - 1 && r < 0.2) out.push(this.event(userId, 'UserDeactivated', 1, { reason: `reason ${i}` }));
      else if (r < 0.3) out.push(this.event(userId, 'UserEmailChanged', 2, { new_email: `${userId}.${i}@example.com`, verified: i % 2 === 0 }));
      else if (r < 0.5) out.push(this.event(userId, 'UserEmailChanged', 1, { email: `${userId}.v1.${i}@example.com` }));
      else if (r < 0.8) out.push(this.event(userId, 'UserRenamed', 2, { first_name: `F${i}`, last_name: `L${i}` }));
      else out.push(this.event(userId, 'UserRenamed', 1, { name: `N${i} M${i}` }));
    }
    return out;
  }
}

/** The users read model as an independent fold of the written events (what the test expects). */
export function expectedUsers(events: TestEvent[]): Map<string, Record<string, unknown>> {
  const m = new Map<string, Record<string, unknown>>();
  for (const e of events) {
    const p = e.payload;
    const cur = m.get(e.aggregateId);
    if (e.eventType === 'UserRegistered') {
      const [first, ...rest] = String(p.name).split(' ');
      m.set(e.aggregateId, { email: p.email, email_verified: false, first_name: first, last_name: rest.join(' '), active: true, version: 1, events_applied: 1 });
      continue;
    }
    if (!cur) throw new Error('event before registration');
    cur.version = Number(e.aggregateVersion);
    cur.events_applied = Number(cur.events_applied) + 1;
    if (e.eventType === 'UserEmailChanged') {
      cur.email = e.schemaVersion === 2 ? p.new_email : p.email;
      cur.email_verified = e.schemaVersion === 2 ? p.verified : false;
    } else if (e.eventType === 'UserRenamed') {
      if (e.schemaVersion === 2) {
        cur.first_name = p.first_name;
        cur.last_name = p.last_name;
      } else {
        const [first, ...rest] = String(p.name).split(' ');
        cur.first_name = first;
        cur.last_name = rest.join(' ');
      }
    } else if (e.eventType === 'UserDeactivated') {
      cur.active = false;
    }
  }
  return m;
}

/** Encode and produce events (keyed by aggregate id, relay-like headers) in chunks. */
export async function produceEvents(producer: Pick<Producer, 'send'>, encoder: EventEncoder, topic: string, events: TestEvent[], chunk = 2000): Promise<void> {
  for (let i = 0; i < events.length; i += chunk) {
    const messages = [];
    for (const e of events.slice(i, i + chunk)) {
      const r = await encoder.encode(e);
      if (!r.ok) throw new Error(`encode failed: ${r.reason}`);
      messages.push({
        key: e.aggregateId,
        value: r.value,
        headers: {
          event_id: e.eventId,
          event_type: e.eventType,
          schema_version: String(e.schemaVersion),
          aggregate_type: e.aggregateType,
          aggregate_id: e.aggregateId,
          aggregate_version: String(e.aggregateVersion),
        },
      });
    }
    await producer.send({ topic, acks: -1, messages });
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export async function createTopic(kafka: Kafka, topic: string, partitions: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }] });
  } finally {
    await admin.disconnect();
  }
}

/** Produce events with a producer of its own: connect, produce (see produceEvents), disconnect. */
export async function produceWith(kafka: Kafka, encoder: EventEncoder, topic: string, events: TestEvent[], producerConfig?: ProducerConfig): Promise<void> {
  const producer = kafka.producer(producerConfig);
  await producer.connect();
  try {
    await produceEvents(producer, encoder, topic, events);
  } finally {
    await producer.disconnect();
  }
}

export interface ProjectorFixtureOptions {
  /** Partitions of the topic (default 1). */
  partitions?: number;
  /** Prefix of the topic's unique name (default `user_events`). */
  topicPrefix?: string;
  /** Settings over the test configuration (`{ OUTBOX_SNAPSHOT_EVERY: '100' }`). */
  env?: Record<string, string>;
  /** The catalog (default: the users catalog under a namespace of its own). */
  catalog?: SchemaCatalog;
}

/** What a projector test starts from: its configuration and Kafka client, a new topic, a catalog of its own with its encoder, and user streams. */
export interface ProjectorFixture {
  config: OutboxConfig;
  kafka: Kafka;
  topic: string;
  /** The catalog's namespace (undefined for a catalog passed in). */
  namespace?: string;
  catalog: SchemaCatalog;
  encoder: EventEncoder;
  streams: UserStreams;
  /** Produce events to the topic (produceWith). */
  produce(events: TestEvent[], producerConfig?: ProducerConfig): Promise<void>;
}

export async function projectorFixture(databaseUrl: string, logger: Logger, options: ProjectorFixtureOptions = {}): Promise<ProjectorFixture> {
  const config = testConfig(databaseUrl, options.env);
  const kafka = createKafka(config.kafka, logger);
  const topic = uniqueName(options.topicPrefix ?? 'user_events');
  await createTopic(kafka, topic, options.partitions ?? 1);
  const namespace = options.catalog ? undefined : uniqueName('ns');
  const catalog = options.catalog ?? testCatalog(namespace!);
  const encoder = await testEncoder(config, catalog, logger);
  return {
    config,
    kafka,
    topic,
    ...(namespace !== undefined ? { namespace } : {}),
    catalog,
    encoder,
    streams: new UserStreams(),
    produce: (events, producerConfig) => produceWith(kafka, encoder, topic, events, producerConfig),
  };
}

/** The smallest projection: table `things` holds the aggregate id of every UserRegistered of `topic`. */
export function thingsProjection(topic: string): Projection {
  return {
    name: 'things',
    topics: [topic],
    tables: ['things'],
    createTables: async (client, s) => {
      await client.query(`CREATE TABLE ${s}.things (id text PRIMARY KEY)`);
    },
    handlers: {
      UserRegistered: async (e, ctx) => {
        await ctx.client.query(`INSERT INTO ${ctx.table('things')} (id) VALUES ($1)`, [e.event.aggregateId]);
      },
    },
  };
}
