import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { registryRequest } from '../../core/registry';
import { createRegistry } from '../support/registry-client';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { createTopics, readTopics } from '../support/kafka';

// Proves the stack is real: a schema goes into the registry, a message encoded with it goes through
// the broker and comes back decoded, and PostgreSQL answers from a database cloned from the template.
const config = loadConfig(process.env, { database: true, kafka: true, registry: true });
const logger = silentLogger();
const db = useTestDatabase();

test('Avro through the registry and Kafka, round trip', async () => {
  const registry = createRegistry(config.registry);
  const kafka = createKafka(config.kafka, logger);
  const topic = uniqueName('smoke');
  const subject = `${topic}-value`;
  const schema = JSON.stringify({
    type: 'record',
    name: 'Ping',
    namespace: 'smoke',
    fields: [
      { name: 'id', type: 'string' },
      { name: 'n', type: 'int' },
    ],
  });
  const { id } = await registry.register({ type: SchemaType.AVRO, schema }, { subject });
  expect(id).toBeGreaterThan(0);

  // The registry really stored it: it is listed under its subject with the same id.
  const latest = await registryRequest(config.registry, { method: 'GET', path: `/subjects/${subject}/versions/latest` });
  expect(latest.status).toBe(200);
  expect((latest.body as { id: number }).id).toBe(id);

  await createTopics(kafka, [topic]);
  const value = await registry.encode(id, { id: 'abc', n: 42 });
  expect(value[0]).toBe(0); // Confluent wire format: magic byte 0, then the 4-byte schema id
  expect(value.readInt32BE(1)).toBe(id);

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: [{ key: 'k1', value }] });
  } finally {
    await producer.disconnect();
  }
  const [read] = await readTopics(kafka, [topic], { count: 1 });
  expect(read?.message.key?.toString()).toBe('k1');
  expect(await registry.decode(read!.message.value!)).toEqual({ id: 'abc', n: 42 });
});

test('PostgreSQL round trip in a per-file database cloned from the migrated template', async () => {
  const { rows } = await db.pool.query<{ db: string; echo: string }>('SELECT current_database() AS db, $1::text AS echo', ['hello']);
  expect(rows[0]).toEqual({ db: db.name, echo: 'hello' });
  const migrations = await db.pool.query('SELECT version FROM outbox_migrations ORDER BY version');
  expect(migrations.rowCount).toBeGreaterThan(0);
});
