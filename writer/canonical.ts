import { createHash } from 'node:crypto';
import { OutboxError } from '../core/errors';

/**
 * The hash chain's canonical encoding, recomputable outside PostgreSQL (docs/hash-chain.md):
 *
 *   hash = SHA-256(prev_hash ‖ canonicalEncoding(event))       prev_hash of version 1 = 32 zero bytes
 *
 * canonicalEncoding = 13 fields in this fixed order, each as a netstring `<utf8 byte length>:<utf8 bytes>,`
 * (NULL as `-,`): event_id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version,
 * occurred_at, actor_id, trace_id, correlation_id, causation_id, traceparent, payload.
 *
 * These functions are pure (no database): the verifier and the projector use them.
 */

/** prev_hash of an aggregate's first event. */
export const ZERO_HASH: Buffer = Buffer.alloc(32);

/** The fields that enter the hash, as stored (payload as its canonical jsonb text, see canonicalJsonb). */
export interface ChainFields {
  /** Lower-case hyphenated UUID, as PostgreSQL prints it. */
  eventId: string;
  aggregateType: string;
  aggregateId: string;
  aggregateVersion: number | bigint | string;
  eventType: string;
  schemaVersion: number;
  /** A Date, or the canonical text `YYYY-MM-DDTHH:MM:SS.ffffffZ` (any ISO-8601 UTC `...Z` form with 0-6 fraction digits is normalized). */
  occurredAt: Date | string;
  actorId: string;
  traceId: string;
  correlationId?: string | null;
  causationId?: string | null;
  traceparent?: string | null;
  /** The payload as PostgreSQL's jsonb text rendering (payload::text); `canonicalJsonb(value)` produces it. */
  payload: string;
}

function invalid(field: string, problem: string): never {
  throw new OutboxError('PAYLOAD_INVALID', `${field} ${problem}`, { details: { field } });
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/** occurred_at in canonical form: UTC, 6 fraction digits, `Z`, e.g. `2024-05-01T12:00:00.123000Z`. */
export function canonicalTimestamp(value: Date | string): string {
  if (value instanceof Date) {
    const t = value.getTime();
    if (!Number.isFinite(t)) invalid('occurredAt', 'is an invalid Date');
    const y = value.getUTCFullYear();
    if (y < 1 || y > 9999) invalid('occurredAt', `must be between years 1 and 9999, got ${y}`);
    return (
      `${pad(y, 4)}-${pad(value.getUTCMonth() + 1, 2)}-${pad(value.getUTCDate(), 2)}` +
      `T${pad(value.getUTCHours(), 2)}:${pad(value.getUTCMinutes(), 2)}:${pad(value.getUTCSeconds(), 2)}` +
      `.${pad(value.getUTCMilliseconds(), 3)}000Z`
    );
  }
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?Z$/.exec(value);
  if (m) return `${m[1]}.${(m[2] ?? '').padEnd(6, '0')}Z`;
  const d = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?([+-]\d{2}:\d{2})$/.test(value) || !Number.isFinite(d.getTime())) {
    invalid('occurredAt', `must be an ISO-8601 timestamp (YYYY-MM-DDTHH:MM:SS.ffffffZ), got "${value}"`);
  }
  return canonicalTimestamp(d);
}

function netstring(value: string | null | undefined): Buffer {
  if (value === null || value === undefined) return Buffer.from('-,', 'latin1');
  const bytes = Buffer.from(value, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length}:`, 'latin1'), bytes, Buffer.from(',', 'latin1')]);
}

function integerText(field: string, v: number | bigint | string): string {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) invalid(field, `must be an integer, got ${v}`);
    return String(v);
  }
  if (!/^-?(0|[1-9]\d*)$/.test(v)) invalid(field, `must be an integer, got "${v}"`);
  return v;
}

/** The canonical bytes of an event (what is hashed after prev_hash). */
export function canonicalEncoding(fields: ChainFields): Buffer {
  return Buffer.concat([
    netstring(fields.eventId.toLowerCase()),
    netstring(fields.aggregateType),
    netstring(fields.aggregateId),
    netstring(integerText('aggregateVersion', fields.aggregateVersion)),
    netstring(fields.eventType),
    netstring(integerText('schemaVersion', fields.schemaVersion)),
    netstring(canonicalTimestamp(fields.occurredAt)),
    netstring(fields.actorId),
    netstring(fields.traceId),
    netstring(fields.correlationId),
    netstring(fields.causationId),
    netstring(fields.traceparent),
    netstring(fields.payload),
  ]);
}

/** A hash given as bytes, or as hex (optionally `\x`-prefixed, as PostgreSQL prints bytea). */
export function toHashBuffer(value: Buffer | Uint8Array | string, field = 'hash'): Buffer {
  if (typeof value === 'string') {
    const hex = value.startsWith('\\x') ? value.slice(2) : value;
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) invalid(field, 'must be 32 bytes (64 hex digits)');
    return Buffer.from(hex, 'hex');
  }
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (b.length !== 32) invalid(field, `must be 32 bytes, got ${b.length}`);
  return b;
}

/** SHA-256(prevHash ‖ canonicalEncoding(fields)). */
export function computeHash(prevHash: Buffer | Uint8Array | string, fields: ChainFields): Buffer {
  return createHash('sha256').update(toHashBuffer(prevHash, 'prevHash')).update(canonicalEncoding(fields)).digest();
}

export interface LinkEvent extends ChainFields {
  /** The event's stored hash. */
  hash: Buffer | Uint8Array | string;
  /** The event's stored prev_hash, if the message carries it. */
  prevHash?: Buffer | Uint8Array | string | null;
}

export interface LinkResult {
  ok: boolean;
  /** The recomputed hash (the `previousHash` to pass for the aggregate's next event). */
  hash: Buffer;
  reason?: string;
}

/**
 * Verify one link of an aggregate's chain on arrival (e.g. in the projector, from the Kafka message's
 * fields). `previousHash` is the hash of the aggregate's previous event as the caller knows it (the
 * `hash` returned for that event). Pass null/undefined when it is not known: version 1 must then link
 * to the zero hash; a later version is checked only against the `prevHash` it carries (self-consistency:
 * the caller starts in the middle of a chain). Returns a value, never throws for a broken link; malformed
 * inputs (a hash that is not 32 bytes, a bad timestamp) throw OutboxError('PAYLOAD_INVALID').
 */
export function verifyEventLink(previousHash: Buffer | Uint8Array | string | null | undefined, event: LinkEvent): LinkResult {
  const version = BigInt(integerText('aggregateVersion', event.aggregateVersion));
  const carried = event.prevHash === undefined || event.prevHash === null ? undefined : toHashBuffer(event.prevHash, 'prevHash');
  const expectedPrev =
    previousHash !== undefined && previousHash !== null ? toHashBuffer(previousHash, 'previousHash') : version === 1n ? ZERO_HASH : undefined;
  const base = expectedPrev ?? carried;
  if (base === undefined) {
    throw new OutboxError('PAYLOAD_INVALID', `verifyEventLink needs previousHash or the event's prevHash for version ${version}`, { details: { field: 'prevHash' } });
  }
  const hash = computeHash(base, event);
  if (version < 1n) return { ok: false, hash, reason: `aggregate_version must be 1 or more, got ${version}` };
  if (expectedPrev !== undefined && carried !== undefined && !carried.equals(expectedPrev)) {
    return { ok: false, hash, reason: `prev_hash ${carried.toString('hex')} does not link to the previous hash ${expectedPrev.toString('hex')}` };
  }
  const stored = toHashBuffer(event.hash, 'hash');
  if (!stored.equals(hash)) {
    return { ok: false, hash, reason: `hash mismatch: stored ${stored.toString('hex')}, recomputed ${hash.toString('hex')}` };
  }
  return { ok: true, hash };
}

// ---------------------------------------------------------------------------------------------------
// jsonb text rendering

const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** A JSON string literal the way PostgreSQL's escape_json writes it. */
function jsonbString(s: string, path: string): string {
  if (s.includes('\u0000')) invalid(path, 'contains a NUL character (\\u0000), which PostgreSQL text and jsonb cannot store');
  if (LONE_SURROGATE.test(s)) invalid(path, 'contains an unpaired UTF-16 surrogate, which is not valid Unicode');
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    switch (c) {
      case 0x22: out += '\\"'; break;
      case 0x5c: out += '\\\\'; break;
      case 0x08: out += '\\b'; break;
      case 0x0c: out += '\\f'; break;
      case 0x0a: out += '\\n'; break;
      case 0x0d: out += '\\r'; break;
      case 0x09: out += '\\t'; break;
      default:
        out += c < 0x20 ? `\\u${c.toString(16).padStart(4, '0')}` : s[i];
    }
  }
  return `${out}"`;
}

/**
 * A JS number as PostgreSQL prints the numeric that JSON.stringify's text of it parses to: plain
 * positional notation, no exponent (1e21 → 1000000000000000000000, 1e-7 → 0.0000001).
 */
function jsonbNumber(n: number, path: string): string {
  if (!Number.isFinite(n)) invalid(path, `must be a finite number, got ${n}`);
  if (Object.is(n, -0)) return '0';
  const text = String(n); // shortest round-trip form, maybe with an exponent
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(text);
  if (!m) return text;
  const sign = m[1] ?? '';
  const intPart = m[2] ?? '0';
  const frac = m[3] ?? '';
  const exp = Number(m[4] ?? '0');
  if (exp === 0) return text;
  const digits = intPart + frac;
  const point = intPart.length + exp; // position of the decimal point in `digits`
  let out: string;
  if (point <= 0) out = `0.${'0'.repeat(-point)}${digits}`;
  else if (point >= digits.length) out = digits + '0'.repeat(point - digits.length);
  else out = `${digits.slice(0, point)}.${digits.slice(point)}`;
  // strip leading zeros of the integer part
  out = out.replace(/^0+(?=\d)/, '');
  return sign + out;
}

function compareKeys(a: Buffer, b: Buffer): number {
  return a.length !== b.length ? a.length - b.length : Buffer.compare(a, b);
}

function render(value: unknown, path: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return jsonbNumber(value, path);
    case 'string':
      return jsonbString(value, path);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v, i) => render(v, `${path}[${i}]`)).join(', ')}]`;
      const entries = Object.entries(value as Record<string, unknown>).map(([k, v]) => ({ k, kb: Buffer.from(k, 'utf8'), v }));
      entries.sort((x, y) => compareKeys(x.kb, y.kb));
      return `{${entries.map((e) => `${jsonbString(e.k, `${path} key "${e.k}"`)}: ${render(e.v, `${path}.${e.k}`)}`).join(', ')}}`;
    }
    default:
      return invalid(path, `has a value of type ${typeof value}, which JSON cannot carry`);
  }
}

/**
 * Render a JS value exactly as PostgreSQL renders `(JSON.stringify(value))::jsonb::text`: object keys
 * ordered by UTF-8 byte length, then bytewise; `", "` and `": "` separators; strings escaped like
 * PostgreSQL (only `"`, `\`, \b \f \n \r \t and other control characters as \u00xx; everything else as
 * UTF-8); numbers in plain positional notation. The value first goes through JSON.stringify/parse, so
 * toJSON (Dates), undefined properties and the like behave as they do on the way into PostgreSQL.
 * Non-finite numbers, NUL characters and unpaired surrogates (which PostgreSQL rejects or JSON would
 * silently change) throw OutboxError('PAYLOAD_INVALID').
 */
export function canonicalJsonb(value: unknown, path = 'payload'): string {
  assertJsonSafe(value, path, 0);
  const text = JSON.stringify(value);
  if (text === undefined) invalid(path, 'is not representable as JSON');
  return render(JSON.parse(text) as unknown, path);
}

/** Throws for values JSON.stringify would silently change (NaN, Infinity) or that PostgreSQL rejects. */
export function assertJsonSafe(value: unknown, path: string, depth: number): void {
  if (depth > 200) invalid(path, 'is nested too deeply');
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) invalid(path, `must be a finite number, got ${value}`);
  } else if (typeof value === 'string') {
    if (value.includes('\u0000')) invalid(path, 'contains a NUL character (\\u0000), which PostgreSQL jsonb cannot store');
    if (LONE_SURROGATE.test(value)) invalid(path, 'contains an unpaired UTF-16 surrogate, which is not valid Unicode');
  } else if (typeof value === 'bigint') {
    invalid(path, 'is a bigint, which JSON cannot carry (use a string)');
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => assertJsonSafe(v, `${path}[${i}]`, depth + 1));
  } else if (value !== null && typeof value === 'object' && typeof (value as { toJSON?: unknown }).toJSON !== 'function') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      assertJsonSafe(k, `${path} key "${k}"`, depth + 1);
      assertJsonSafe(v, `${path}.${k}`, depth + 1);
    }
  }
}
