/**
 * Record encoding for kafkajs's produce requests, without its garbage.
 *
 * kafkajs 2.2.4 encodes every record through a fresh zero-filled 512-byte `Encoder`, one more per
 * header, grows them by copying, and allocates a Buffer for every varint; its record batch grows one
 * more buffer record by record and copies it twice. With an event's eleven headers that is about 6 KB of
 * garbage per 1 KB event, and it was the largest share of the relay's CPU (docs/performance.md, "The
 * relay's CPU, and what bounds a drain on one machine"). This module replaces kafkajs's record encoder
 * (`recordBatch/record/v0`) and, for uncompressed batches, its record batch encoder (`recordBatch/v0`'s
 * `RecordBatch`) by ones that compute the exact size first and write each record and each batch into one
 * buffer.
 *
 * The bytes are kafkajs's, exactly: test/core/kafka-record-encoding.test.ts compares them with kafkajs's
 * own encoders over many records. Anything outside the inputs written here — a key, value or header that
 * is neither a string nor a Buffer, a timestamp delta that is not an integer of at most 2^52, a
 * compressed batch — is handed to kafkajs's own encoder. Installed once, by `createKafka`, before
 * kafkajs loads its produce request (which captures the encoders when it is loaded), and only for the
 * kafkajs version it was written against. The batch's CRC-32C is computed eight bytes at a time
 * (core/crc32c.ts).
 */

import { crc32c } from './crc32c';
import { errorMessage } from './errors';

/** The kafkajs version whose internals this module replaces (an exact match is required). */
export const KAFKAJS_VERSION = '2.2.4';

const RECORD_MODULE = 'kafkajs/src/protocol/recordBatch/record/v0';
const BATCH_MODULE = 'kafkajs/src/protocol/recordBatch/v0';
const PRODUCE_REQUEST_MODULE = 'kafkajs/src/protocol/requests/produce/v3/request';
const LONG_MODULE = 'kafkajs/src/utils/long';
const COMPRESSION_MODULE = 'kafkajs/src/protocol/message/compression';

/** What kafkajs's encoders produce and its request encoders read: `.buf` (checked), `.buffer`, `.size()`. */
export interface EncodedBytes {
  readonly buf: Buffer;
  readonly buffer: Buffer;
  size(): number;
}

type HeaderValue = string | Buffer | null | undefined | Array<string | Buffer>;
export interface RecordInput {
  offsetDelta?: number;
  timestampDelta?: unknown;
  key?: unknown;
  value?: unknown;
  headers?: Record<string, HeaderValue> | undefined;
}
type RecordEncoder = (input: RecordInput) => EncodedBytes;

export interface RecordBatchInput {
  compression?: number;
  firstOffset?: unknown;
  firstTimestamp?: unknown;
  maxTimestamp?: unknown;
  partitionLeaderEpoch?: number;
  lastOffsetDelta?: number;
  transactional?: boolean;
  producerId?: unknown;
  producerEpoch?: number;
  firstSequence?: number;
  records?: EncodedBytes[];
}
type RecordBatchEncoder = (input: RecordBatchInput) => Promise<EncodedBytes>;

interface LongClass {
  fromValue(v: unknown): { getHighBits(): number; getLowBits(): number };
  fromInt(v: number): unknown;
}

function bytesOf(buf: Buffer): EncodedBytes {
  return { buf, buffer: buf, size: () => buf.length };
}

/** kafkajs's zig-zag of a 32-bit varint. */
const zigzag32 = (v: number): number => (v << 1) ^ (v >> 31);

function uvarintSize(u: number): number {
  let bytes = 1;
  while ((u & 0xffffff80) !== 0) {
    bytes += 1;
    u >>>= 7;
  }
  return bytes;
}

function writeUVarInt(buf: Buffer, offset: number, u: number): number {
  while ((u & 0xffffff80) !== 0) {
    buf[offset++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  buf[offset++] = u & 0x7f;
  return offset;
}

const varintSize = (v: number): number => uvarintSize(zigzag32(v));
const writeVarInt = (buf: Buffer, offset: number, v: number): number => writeUVarInt(buf, offset, zigzag32(v));

/** Largest |timestamp delta| written here: its zig-zag (2|v| or 2|v| - 1) stays an exact double. */
const MAX_TIMESTAMP_DELTA = 2 ** 52 - 1;

/** Zig-zag of a 64-bit varint, as a double (exact for |v| <= MAX_TIMESTAMP_DELTA). */
const zigzag64 = (v: number): number => (v >= 0 ? v * 2 : -v * 2 - 1);

function uvarlongSize(z: number): number {
  let bytes = 1;
  while (z >= 128) {
    bytes += 1;
    z = Math.floor(z / 128);
  }
  return bytes;
}

function writeUVarLong(buf: Buffer, offset: number, z: number): number {
  while (z >= 128) {
    buf[offset++] = (z % 128) | 0x80;
    z = Math.floor(z / 128);
  }
  buf[offset++] = z;
  return offset;
}

/** A key, value or header value this module writes: null/undefined (length -1), a string (UTF-8) or a Buffer. */
function plainBytes(v: unknown): v is string | Buffer | null | undefined {
  return v === null || v === undefined || typeof v === 'string' || Buffer.isBuffer(v);
}

function byteLength(v: string | Buffer): number {
  return typeof v === 'string' ? Buffer.byteLength(v, 'utf8') : v.length;
}

function writeBytes(buf: Buffer, offset: number, v: string | Buffer, length: number): number {
  if (typeof v === 'string') buf.write(v, offset, length, 'utf8');
  else v.copy(buf, offset);
  return offset + length;
}

/**
 * One record (Kafka record format v2), as kafkajs's `recordBatch/record/v0` encodes it, or undefined when
 * the input is one this module leaves to kafkajs.
 */
export function encodeRecordFast(input: RecordInput): EncodedBytes | undefined {
  const { offsetDelta = 0, timestampDelta = 0, key, value, headers = {} } = input;
  if (typeof timestampDelta !== 'number' || !Number.isInteger(timestampDelta) || Math.abs(timestampDelta) > MAX_TIMESTAMP_DELTA) return undefined;
  if (!Number.isInteger(offsetDelta)) return undefined;
  if (!plainBytes(key) || !plainBytes(value)) return undefined;
  // Headers in kafkajs's order: object keys, a repeated header's values in order.
  const names: string[] = [];
  const values: Array<string | Buffer> = [];
  for (const name of Object.keys(headers)) {
    const v = headers[name];
    if (Array.isArray(v)) {
      for (const item of v) {
        if (typeof item !== 'string' && !Buffer.isBuffer(item)) return undefined;
        names.push(name);
        values.push(item);
      }
    } else if (typeof v === 'string' || Buffer.isBuffer(v)) {
      names.push(name);
      values.push(v);
    } else {
      return undefined;
    }
  }
  const keyLength = key === null || key === undefined ? -1 : byteLength(key);
  const valueLength = value === null || value === undefined ? -1 : byteLength(value);
  const nameLengths = names.map((n) => Buffer.byteLength(n, 'utf8'));
  const valueLengths = values.map(byteLength);
  const tsZigzag = zigzag64(timestampDelta);
  let body = 1 + uvarlongSize(tsZigzag) + varintSize(offsetDelta);
  body += keyLength < 0 ? varintSize(-1) : varintSize(keyLength) + keyLength;
  body += valueLength < 0 ? varintSize(-1) : varintSize(valueLength) + valueLength;
  body += varintSize(names.length);
  for (let i = 0; i < names.length; i++) {
    const n = nameLengths[i]!;
    const v = valueLengths[i]!;
    body += varintSize(n) + n + varintSize(v) + v;
  }
  const total = varintSize(body) + body;
  const buf = Buffer.allocUnsafe(total);
  let at = writeVarInt(buf, 0, body);
  buf[at++] = 0; // attributes: none used
  at = writeUVarLong(buf, at, tsZigzag);
  at = writeVarInt(buf, at, offsetDelta);
  if (keyLength < 0) at = writeVarInt(buf, at, -1);
  else at = writeBytes(buf, writeVarInt(buf, at, keyLength), key as string | Buffer, keyLength);
  if (valueLength < 0) at = writeVarInt(buf, at, -1);
  else at = writeBytes(buf, writeVarInt(buf, at, valueLength), value as string | Buffer, valueLength);
  at = writeVarInt(buf, at, names.length);
  for (let i = 0; i < names.length; i++) {
    at = writeBytes(buf, writeVarInt(buf, at, nameLengths[i]!), names[i]!, nameLengths[i]!);
    at = writeBytes(buf, writeVarInt(buf, at, valueLengths[i]!), values[i]!, valueLengths[i]!);
  }
  if (at !== total) throw new Error(`record encoding wrote ${at} of ${total} bytes`);
  return bytesOf(buf);
}

/** Bytes of a record batch before its records: base offset, length, epoch, magic, CRC, attributes ... record count. */
const BATCH_HEADER_BYTES = 61;
/** Where the CRC-covered part (attributes onwards) starts. */
const CRC_FROM = 21;
const MAGIC_BYTE = 2;
const TRANSACTIONAL_FLAG = 16;

export interface BatchDeps {
  Long: LongClass;
  crc32C: (b: Buffer) => number;
  none: number;
  codecMask: number;
}

/**
 * An uncompressed record batch (magic v2) as kafkajs's `RecordBatch` encodes it — base offset, then the
 * batch as length-prefixed bytes — in one buffer; undefined for a compressed batch.
 */
export function encodeRecordBatchFast(input: RecordBatchInput, deps: BatchDeps): EncodedBytes | undefined {
  const compression = input.compression ?? deps.none;
  if (compression !== deps.none) return undefined;
  const now = Date.now();
  const {
    firstOffset = deps.Long.fromInt(0),
    firstTimestamp = now,
    maxTimestamp = now,
    partitionLeaderEpoch = 0,
    lastOffsetDelta = 0,
    transactional = false,
    producerId = deps.Long.fromValue(-1),
    producerEpoch = 0,
    firstSequence = 0,
    records = [],
  } = input;
  let recordBytes = 0;
  for (const r of records) recordBytes += r.buffer.length;
  const buf = Buffer.allocUnsafe(BATCH_HEADER_BYTES + recordBytes);
  const int64 = (at: number, v: unknown): void => {
    const l = deps.Long.fromValue(v);
    buf.writeInt32BE(l.getHighBits(), at);
    buf.writeInt32BE(l.getLowBits(), at + 4);
  };
  int64(0, firstOffset);
  buf.writeInt32BE(buf.length - 12, 8); // the batch's length, after base offset and this field
  buf.writeInt32BE(partitionLeaderEpoch, 12);
  buf.writeInt8(MAGIC_BYTE, 16);
  // CRC at 17, written last
  buf.writeInt16BE((compression & deps.codecMask) | (transactional ? TRANSACTIONAL_FLAG : 0), 21);
  buf.writeInt32BE(lastOffsetDelta, 23);
  int64(27, firstTimestamp);
  int64(35, maxTimestamp);
  int64(43, producerId);
  buf.writeInt16BE(producerEpoch, 51);
  buf.writeInt32BE(firstSequence, 53);
  buf.writeInt32BE(records.length, 57);
  let at = BATCH_HEADER_BYTES;
  for (const r of records) at += r.buffer.copy(buf, at);
  buf.writeUInt32BE(deps.crc32C(buf.subarray(CRC_FROM)), 17);
  return bytesOf(buf);
}

/** What the batch encoder takes from kafkajs (its Long, its compression codes) and the CRC-32C it uses. */
export function batchDeps(): BatchDeps {
  const compression = require(COMPRESSION_MODULE) as { Types: { None: number }; COMPRESSION_CODEC_MASK: number };
  return {
    Long: require(LONG_MODULE) as LongClass,
    crc32C: crc32c,
    none: compression.Types.None,
    codecMask: compression.COMPRESSION_CODEC_MASK,
  };
}

export type InstallOutcome = { installed: true } | { installed: false; reason: string };

let outcome: InstallOutcome | undefined;

/**
 * Put the encoders in place of kafkajs's (once; later calls return the first outcome). Not installed —
 * kafkajs's own encoders stay, correct and slower — when kafkajs is another version than the one this was
 * written against, or its produce request was loaded before (it captured the encoders then).
 */
export function installFastRecordEncoding(): InstallOutcome {
  outcome ??= install();
  return outcome;
}

function install(): InstallOutcome {
  try {
    const version = (require('kafkajs/package.json') as { version: string }).version;
    if (version !== KAFKAJS_VERSION) return { installed: false, reason: `kafkajs ${version} is not ${KAFKAJS_VERSION}` };
    const cache = require.cache;
    if (cache[require.resolve(PRODUCE_REQUEST_MODULE)] !== undefined) return { installed: false, reason: 'kafkajs loaded its produce request before' };
    const originalRecord = require(RECORD_MODULE) as RecordEncoder;
    const batchModule = require(BATCH_MODULE) as { RecordBatch: RecordBatchEncoder };
    const originalBatch = batchModule.RecordBatch;
    const recordEntry = cache[require.resolve(RECORD_MODULE)];
    if (recordEntry === undefined) return { installed: false, reason: 'the module cache does not hold kafkajs record encoder' };
    const deps = batchDeps();
    const record: RecordEncoder = (input) => encodeRecordFast(input) ?? originalRecord(input);
    const recordBatch: RecordBatchEncoder = async (input) => encodeRecordBatchFast(input, deps) ?? originalBatch(input);
    recordEntry.exports = record;
    batchModule.RecordBatch = recordBatch;
    return { installed: true };
  } catch (err) {
    return { installed: false, reason: errorMessage(err) };
  }
}
