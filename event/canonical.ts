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
 * These functions are pure (no database): the writer's verifier, the projector and the audit tools use
 * them; event/hash-chain.ts computes and verifies the links.
 */

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

/** A netstring as text; written as UTF-8 it is `<utf8 byte length>:<utf8 bytes>,` (NULL: `-,`). */
function netstring(value: string | null | undefined): string {
  if (value === null || value === undefined) return '-,';
  return `${Buffer.byteLength(value, 'utf8')}:${value},`;
}

export function integerText(field: string, v: number | bigint | string): string {
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) invalid(field, `must be an integer, got ${v}`);
    return String(v);
  }
  if (!/^-?(0|[1-9]\d*)$/.test(v)) invalid(field, `must be an integer, got "${v}"`);
  return v;
}

/**
 * The canonical encoding as a string whose UTF-8 bytes are canonicalEncoding(fields): one string, so
 * that hashing an event allocates no buffer per field. Every field is enclosed by ASCII (its length
 * prefix and its comma), so its UTF-8 bytes are the same inside the string as on their own.
 */
export function canonicalText(fields: ChainFields): string {
  return (
    netstring(fields.eventId.toLowerCase()) +
    netstring(fields.aggregateType) +
    netstring(fields.aggregateId) +
    netstring(integerText('aggregateVersion', fields.aggregateVersion)) +
    netstring(fields.eventType) +
    netstring(integerText('schemaVersion', fields.schemaVersion)) +
    netstring(canonicalTimestamp(fields.occurredAt)) +
    netstring(fields.actorId) +
    netstring(fields.traceId) +
    netstring(fields.correlationId) +
    netstring(fields.causationId) +
    netstring(fields.traceparent) +
    netstring(fields.payload)
  );
}

/** The canonical bytes of an event (what is hashed after prev_hash). */
export function canonicalEncoding(fields: ChainFields): Buffer {
  return Buffer.from(canonicalText(fields), 'utf8');
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
      case 0x22:
        out += '\\"';
        break;
      case 0x5c:
        out += '\\\\';
        break;
      case 0x08:
        out += '\\b';
        break;
      case 0x0c:
        out += '\\f';
        break;
      case 0x0a:
        out += '\\n';
        break;
      case 0x0d:
        out += '\\r';
        break;
      case 0x09:
        out += '\\t';
        break;
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
