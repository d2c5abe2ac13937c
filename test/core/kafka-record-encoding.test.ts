// Pure logic: the record and record batch bytes written by core/kafka-record-encoding.ts are kafkajs's own,
// byte for byte, over many generated records (the relay's shape and odd ones), and what the fast path
// leaves to kafkajs is left to it.
import { crc32c } from '../../core/crc32c';
import { batchDeps, encodeRecordBatchFast, encodeRecordFast, type EncodedBytes, type RecordBatchInput, type RecordInput } from '../../core/kafka-record-encoding';

// kafkajs's own encoders, straight from its files (this test file never installs the fast ones).
const kafkajsRecord = require('kafkajs/src/protocol/recordBatch/record/v0') as (input: RecordInput) => EncodedBytes;
const { RecordBatch: kafkajsRecordBatch } = require('kafkajs/src/protocol/recordBatch/v0') as { RecordBatch: (input: RecordBatchInput) => Promise<EncodedBytes> };
const kafkajsCrc32C = require('kafkajs/src/protocol/recordBatch/crc32C') as (b: Buffer) => number;
const Long = require('kafkajs/src/utils/long') as { fromValue(v: unknown): unknown; fromInt(v: number): unknown };

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ALPHABET = ['a', 'Z', '0', '-', ' ', 'é', 'ß', '€', '😀', '\u0000', '漢'];

function text(next: () => number, max: number): string {
  const n = Math.floor(next() * max);
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(next() * ALPHABET.length)]!;
  return s;
}

function bytes(next: () => number, max: number): Buffer {
  return Buffer.from(Array.from({ length: Math.floor(next() * max) }, () => Math.floor(next() * 256)));
}

function maybeBytes(next: () => number, max: number): string | Buffer | null | undefined {
  const r = next();
  if (r < 0.1) return null;
  if (r < 0.15) return undefined;
  return r < 0.55 ? text(next, max) : bytes(next, max);
}

function record(next: () => number, i: number): RecordInput {
  const headers: Record<string, string | Buffer | Array<string | Buffer>> = {};
  const count = Math.floor(next() * 16);
  for (let h = 0; h < count; h++) {
    const name = `${text(next, 12)}h${h}`;
    headers[name] = next() < 0.15 ? [text(next, 40), bytes(next, 20)] : next() < 0.5 ? text(next, 80) : bytes(next, 80);
  }
  const deltas = [0, 1, -1, 63, 64, -65, 8191, 8192, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 2 ** 40 + 3, -(2 ** 45), 2 ** 52 - 1, -(2 ** 52 - 1), 2 ** 52 - 2];
  return {
    offsetDelta: next() < 0.8 ? i : Math.floor(next() * 2 ** 31),
    timestampDelta: next() < 0.5 ? Math.floor(next() * 100_000) : deltas[Math.floor(next() * deltas.length)],
    key: maybeBytes(next, 40),
    value: next() < 0.1 ? bytes(next, 20_000) : maybeBytes(next, 1_500),
    headers,
  };
}

/** The relay's shape: a string key, an Avro value of about 1 KB, eleven string headers. */
function relayRecord(i: number): RecordInput {
  return {
    offsetDelta: i,
    timestampDelta: i * 3,
    key: Buffer.from(`user-${i % 2000}`),
    value: Buffer.alloc(1050, i % 251),
    headers: {
      event_id: '0f8fad5b-d9cb-469f-a165-70867728950e',
      event_type: 'UserRegistered',
      schema_version: '1',
      aggregate_type: 'user',
      aggregate_id: `user-${i % 2000}`,
      aggregate_version: String(i),
      actor_id: 'actor-1',
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      occurred_at: '2026-12-02T13:00:00.123456Z',
      hash: 'ab'.repeat(32),
      prev_hash: 'cd'.repeat(32),
    },
  };
}

describe('kafka record encoding', () => {
  test('a record is byte for byte what kafkajs writes', () => {
    const next = random(20261202);
    for (let i = 0; i < 3000; i++) {
      const input = i < 200 ? relayRecord(i) : record(next, i);
      const fast = encodeRecordFast(input);
      expect(fast).toBeDefined();
      const ours = fast!.buffer;
      const theirs = kafkajsRecord(input).buffer;
      if (!ours.equals(theirs)) throw new Error(`record ${i} differs: ${JSON.stringify({ ...input, value: String(input.value).slice(0, 40) })}`);
      expect(fast!.size()).toBe(theirs.length);
    }
  });

  test('defaults: no headers, no offset or timestamp delta, null key and value', () => {
    for (const input of [{}, { key: null, value: null }, { headers: {} }, { key: '', value: Buffer.alloc(0) }] as RecordInput[]) {
      expect(encodeRecordFast(input)!.buffer.equals(kafkajsRecord(input).buffer)).toBe(true);
    }
  });

  test('inputs outside the fast path are left to kafkajs', () => {
    expect(encodeRecordFast({ key: 42 })).toBeUndefined();
    expect(encodeRecordFast({ value: { a: 1 } })).toBeUndefined();
    expect(encodeRecordFast({ headers: { a: null } })).toBeUndefined();
    expect(encodeRecordFast({ headers: { a: [Buffer.from('x'), null as unknown as string] } })).toBeUndefined();
    expect(encodeRecordFast({ timestampDelta: 1.5 })).toBeUndefined();
    expect(encodeRecordFast({ timestampDelta: 2 ** 60 })).toBeUndefined();
    expect(encodeRecordFast({ timestampDelta: -Number.MAX_SAFE_INTEGER })).toBeUndefined();
    expect(encodeRecordFast({ timestampDelta: Long.fromValue(5) })).toBeUndefined();
    expect(encodeRecordBatchFast({ compression: 1, records: [] }, batchDeps())).toBeUndefined();
  });

  test('CRC-32C: the check value, and the result of kafkajs for every length and offset', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(0))).toBe(kafkajsCrc32C(Buffer.alloc(0)));
    const next = random(11);
    const data = Buffer.from(Array.from({ length: 5000 }, () => Math.floor(next() * 256)));
    for (let length = 0; length < 300; length++) {
      for (const start of [0, 1, 3, 7]) {
        const slice = data.subarray(start, start + length);
        expect(crc32c(slice)).toBe(kafkajsCrc32C(slice));
      }
    }
    expect(crc32c(data)).toBe(kafkajsCrc32C(data));
  });

  test('an uncompressed record batch is byte for byte what kafkajs writes', async () => {
    const next = random(7);
    const deps = batchDeps();
    for (let b = 0; b < 60; b++) {
      const count = b === 0 ? 0 : 1 + Math.floor(next() * 200);
      const records = Array.from({ length: count }, (_, i) => kafkajsRecord(b % 2 === 0 ? relayRecord(i) : record(next, i)));
      const now = 1796218305397 + b;
      const input: RecordBatchInput = {
        compression: 0,
        records,
        firstTimestamp: b % 3 === 0 ? String(now) : now,
        maxTimestamp: b % 3 === 0 ? String(now + 500) : now + 500,
        producerId: b % 4 === 0 ? Long.fromValue(-1) : Long.fromValue(4_000_000_000 + b),
        producerEpoch: b % 5,
        firstSequence: b * 1000,
        transactional: b % 2 === 1,
        lastOffsetDelta: count - 1,
        ...(b % 7 === 0 ? { partitionLeaderEpoch: 3, firstOffset: Long.fromInt(12) } : {}),
      };
      // kafkajs takes Date.now() for a missing timestamp: both are given one here.
      const ours = encodeRecordBatchFast(input, deps)!;
      const theirs = await kafkajsRecordBatch(input);
      expect(ours.buffer.equals(theirs.buffer)).toBe(true);
      expect(ours.size()).toBe(theirs.size());
    }
  });
});
