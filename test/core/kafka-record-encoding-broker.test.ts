import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { CompressionTypes } from 'kafkajs';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { createTopics, readTopics } from '../support/kafka';
import { uniqueName } from '../support/isolation';

// The record encoders that replace kafkajs's (core/kafka-record-encoding.ts): in place in a real Node
// process when a client is created (and not when kafkajs loaded its produce request first), and what a
// producer writes with them reaches a consumer through the real broker intact — odd keys, repeated and
// binary headers, empty values, idempotent and gzip-compressed (kafkajs's own batch encoder) batches.

const ROOT = path.resolve(__dirname, '../..');

function inNode(script: string): string {
  return execFileSync(process.execPath, ['-r', 'tsx/cjs', '-e', script], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, LOG_LEVEL: 'silent' } }).trim();
}

test('a Kafka client puts the encoders in place; loaded after kafkajs produce request, kafkajs keeps its own', () => {
  const installed = inNode(`
    const { createKafka } = require('./core/kafka');
    const { createLogger } = require('./core/logger');
    createKafka({ brokers: ['127.0.0.1:9'], clientId: 't', ssl: false, connectionTimeoutMs: 100, requestTimeoutMs: 100 }, createLogger({ level: 'silent' }));
    const record = require('kafkajs/src/protocol/recordBatch/record/v0');
    console.log(String(record).includes('encodeRecordFast'));`);
  expect(installed).toBe('true');
  const late = inNode(`
    require('kafkajs/src/protocol/requests/produce/v3/request');
    const { installFastRecordEncoding } = require('./core/kafka-record-encoding');
    console.log(JSON.stringify(installFastRecordEncoding()));`);
  expect(JSON.parse(late)).toEqual({ installed: false, reason: 'kafkajs loaded its produce request before' });
});

test('records written with them are read back intact through the broker', async () => {
  const config = loadConfig(process.env, { kafka: true });
  const kafka = createKafka(config.kafka, silentLogger());
  const topic = uniqueName('records');
  await createTopics(kafka, [topic], 3);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const sent = Array.from({ length: 120 }, (_, i) => ({
    key: i % 10 === 0 ? null : i % 3 === 0 ? Buffer.from([0, 255, i]) : `key-${i % 7}-é漢`,
    value: i % 11 === 0 ? Buffer.alloc(0) : Buffer.from(`value ${i} `.repeat(1 + (i % 50)) + '😀'),
    headers: { event_id: `e${i}`, bin: Buffer.from([i, 0, 255]), many: [`a${i}`, `b${i}`], empty: '' },
    timestamp: String(1_796_000_000_000 + i * 37),
  }));
  try {
    await producer.send({ topic, acks: -1, messages: sent.slice(0, 60) });
    await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages: sent.slice(60) });
  } finally {
    await producer.disconnect();
  }
  const read = await readTopics(kafka, [topic], { count: sent.length, timeoutMs: 60_000 });
  expect(read).toHaveLength(sent.length);
  const byId = new Map(read.map((r) => [String(r.message.headers?.event_id), r.message]));
  for (const [i, s] of sent.entries()) {
    const m = byId.get(`e${i}`);
    expect(m).toBeDefined();
    expect(m!.key === null ? null : Buffer.from(m!.key)).toEqual(s.key === null ? null : Buffer.from(s.key));
    expect(Buffer.from(m!.value ?? Buffer.alloc(0)).equals(s.value)).toBe(true);
    expect(m!.timestamp).toBe(s.timestamp);
    expect(Buffer.from(m!.headers!.bin as Buffer).equals(s.headers.bin)).toBe(true);
    expect((m!.headers!.many as Buffer[]).map(String)).toEqual(s.headers.many);
    expect(String(m!.headers!.empty)).toBe('');
  }
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
});
