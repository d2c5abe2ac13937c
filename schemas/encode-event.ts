import type * as avsc from 'avsc';
import type { RegistrySettings } from '../core/config';
import type { EventEnvelope } from '../event/envelope';
import type { Logger } from '../core/logger';
import type { CatalogEntry, SchemaCatalog } from './catalog';
import { lookupSchemaId, registerSchema } from './registry-http';
import { formatPath, validationProblems } from './validate';

/**
 * What the encoder takes: an event envelope. `occurredAt` may also be an ISO-8601 string with up to
 * microsecond precision (the Avro field is timestamp-micros), for events that do not come from the
 * outbox table. Malformed values (a version that is not a whole number, an unparsable time) are
 * returned as `invalid_payload` naming the field, never thrown.
 */
export type OutboxEventForEncoding = Omit<EventEnvelope, 'occurredAt'> & { occurredAt: Date | string };

export type EncodeResult = { ok: true; value: Buffer; schemaId: number } | { ok: false; kind: 'unknown_schema' | 'invalid_payload'; reason: string };

export interface EventEncoder {
  /** Look up (registering when missing and autoRegister) every catalog schema once and cache the ids. */
  prepare(): Promise<void>;
  /** Encode in the Confluent wire format: 0x00, 4-byte big-endian schema id, Avro body of the envelope. */
  encode(event: OutboxEventForEncoding): Promise<EncodeResult>;
  /** Schema id cached for an (event type, version), if known. */
  schemaIdOf(eventType: string, version: number): number | undefined;
}

export interface EventEncoderOptions {
  registry: RegistrySettings;
  catalog: SchemaCatalog;
  logger: Logger;
  /** Register a schema the registry does not have yet (default true). When false, such events are `unknown_schema`. */
  autoRegister?: boolean;
  /** How long a registry rejection (e.g. incompatible) is remembered before asking again (default 30 s). */
  rejectionTtlMs?: number;
}

type IdState = { id: number } | { rejected: string; at: number };

/** Envelope value (Avro field names) of an event; exported for tests and tools. */
export function envelopeValue(event: OutboxEventForEncoding): { value: Record<string, unknown> } | { problem: string } {
  const micros = toMicros(event.occurredAt);
  if (micros === undefined) return { problem: `occurred_at: expected a timestamp (Date or ISO-8601 string), got ${JSON.stringify(String(event.occurredAt))}` };
  const version = toSafeInteger(event.aggregateVersion);
  if (version === undefined) return { problem: `aggregate_version: expected a whole number, got ${JSON.stringify(String(event.aggregateVersion))}` };
  const hash = toHex(event.hash);
  if (hash === undefined) return { problem: 'hash: expected a Buffer or hex string' };
  const prevHash = toHex(event.prevHash);
  if (prevHash === undefined) return { problem: 'prev_hash: expected a Buffer or hex string' };
  return {
    value: {
      event_id: event.eventId,
      event_type: event.eventType,
      schema_version: event.schemaVersion,
      aggregate_type: event.aggregateType,
      aggregate_id: event.aggregateId,
      aggregate_version: version,
      occurred_at: micros,
      actor_id: event.actorId ?? null,
      trace_id: event.traceId ?? null,
      correlation_id: event.correlationId ?? null,
      causation_id: event.causationId ?? null,
      traceparent: event.traceparent ?? null,
      hash,
      prev_hash: prevHash,
      payload: event.payload,
    },
  };
}

/** Microseconds since the epoch; ISO strings keep up to 6 fractional digits. */
export function toMicros(t: Date | string): number | undefined {
  if (t instanceof Date) {
    const ms = t.getTime();
    return Number.isFinite(ms) ? ms * 1000 : undefined;
  }
  if (typeof t !== 'string') return undefined;
  const ms = Date.parse(t);
  if (!Number.isFinite(ms)) return undefined;
  const frac = /T\d{2}:\d{2}:\d{2}\.(\d+)/.exec(t)?.[1];
  if (frac === undefined) return ms * 1000;
  const wholeSecondsMs = Math.floor(ms / 1000) * 1000;
  return wholeSecondsMs * 1000 + Number(frac.padEnd(6, '0').slice(0, 6));
}

function toSafeInteger(v: unknown): number | undefined {
  if (typeof v !== 'number' && typeof v !== 'string' && typeof v !== 'bigint') return undefined;
  const n = typeof v === 'string' ? (/^-?\d+$/.test(v.trim()) ? Number(v) : NaN) : Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

function toHex(v: unknown): string | undefined {
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (typeof v === 'string' && /^[0-9a-fA-F]*$/.test(v) && v.length % 2 === 0) return v.toLowerCase();
  return undefined;
}

/**
 * Paths of record fields that have a default in the schema but are absent from the value. Avro fills
 * such a field in when decoding, so the decoded payload differs from the stored one its hash covers.
 */
export function omittedDefaults(type: avsc.Type, value: unknown, path: string[]): string[] {
  const name = type.typeName;
  const out: string[] = [];
  if (name === 'record' || name === 'error') {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return out;
    for (const f of (type as avsc.types.RecordType).fields) {
      const v = (value as Record<string, unknown>)[f.name];
      if (v === undefined) {
        if (f.defaultValue() !== undefined) out.push(formatPath([...path, f.name]));
      } else {
        out.push(...omittedDefaults(f.type, v, [...path, f.name]));
      }
    }
  } else if (name === 'array') {
    if (Array.isArray(value)) value.forEach((item, i) => out.push(...omittedDefaults((type as avsc.types.ArrayType).itemsType, item, [...path, String(i)])));
  } else if (name === 'map') {
    if (typeof value === 'object' && value !== null)
      for (const [k, v] of Object.entries(value)) out.push(...omittedDefaults((type as avsc.types.MapType).valuesType as avsc.Type, v, [...path, k]));
  } else if (name === 'union:unwrapped') {
    const records = (type as avsc.types.UnwrappedUnionType).types.filter((t) => t.typeName === 'record');
    if (records.length === 1 && typeof value === 'object' && value !== null) out.push(...omittedDefaults(records[0]!, value, path));
  }
  return out;
}

function header(id: number): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt8(0, 0);
  h.writeInt32BE(id, 1);
  return h;
}

export function createEventEncoder(options: EventEncoderOptions): EventEncoder {
  const { registry, catalog } = options;
  const logger = options.logger.child({ component: 'event-encoder' });
  const autoRegister = options.autoRegister ?? true;
  const rejectionTtlMs = options.rejectionTtlMs ?? 30_000;
  const ids = new Map<CatalogEntry, IdState>();
  const headers = new Map<number, Buffer>();
  const inflight = new Map<string, Promise<void>>();

  /** Resolve the ids of all versions of a subject up to `upTo`, in version order (registration keeps order). */
  async function resolveSubject(subject: string, upTo: number): Promise<void> {
    for (const entry of catalog.bySubject(subject)) {
      if (entry.version > upTo) break;
      const state = ids.get(entry);
      if (state && 'id' in state) continue;
      if (state && 'rejected' in state && Date.now() - state.at < rejectionTtlMs) continue;
      const found = await lookupSchemaId(registry, subject, entry.envelopeSchema);
      if (found) {
        ids.set(entry, { id: found.id });
        continue;
      }
      if (!autoRegister) {
        ids.set(entry, { rejected: `is not registered in the schema registry (subject ${subject}); run outbox schemas register`, at: Date.now() });
        continue;
      }
      const reg = await registerSchema(registry, subject, entry.envelopeSchema);
      if (reg.ok) {
        logger.info({ subject, version: entry.version, schemaId: reg.id }, 'registered event schema');
        ids.set(entry, { id: reg.id });
      } else {
        logger.warn({ subject, version: entry.version, status: reg.status, message: reg.message }, 'schema registry rejected event schema');
        ids.set(entry, { rejected: `was rejected by the schema registry (subject ${subject}, HTTP ${reg.status}): ${reg.message}`, at: Date.now() });
      }
    }
  }

  function once(subject: string, upTo: number): Promise<void> {
    const key = `${subject}@${upTo}`;
    let p = inflight.get(key);
    if (!p) {
      p = resolveSubject(subject, upTo).finally(() => inflight.delete(key));
      inflight.set(key, p);
    }
    return p;
  }

  async function idFor(entry: CatalogEntry): Promise<IdState> {
    const cached = ids.get(entry);
    if (cached && ('id' in cached || Date.now() - cached.at < rejectionTtlMs)) return cached;
    await once(entry.subject, entry.version);
    return ids.get(entry) ?? { rejected: 'has no schema id (internal)', at: Date.now() };
  }

  return {
    async prepare() {
      const subjects = [...new Set(catalog.all().map((e) => e.subject))];
      for (const subject of subjects) await once(subject, Number.MAX_SAFE_INTEGER);
      const rejected = catalog.all().filter((e) => {
        const s = ids.get(e);
        return s !== undefined && 'rejected' in s;
      });
      logger.info({ schemas: catalog.all().length, rejected: rejected.map((e) => `${e.eventType} v${e.version}`) }, 'event schemas prepared');
    },

    schemaIdOf(eventType, version) {
      const entry = catalog.get(eventType, version);
      const s = entry ? ids.get(entry) : undefined;
      return s && 'id' in s ? s.id : undefined;
    },

    async encode(event) {
      const entry = catalog.get(event.eventType, event.schemaVersion);
      if (!entry) {
        const latest = catalog.latest(event.eventType);
        const known = latest ? ` (known versions: 1..${latest.version})` : '';
        const file = catalog.expectedFile(latest?.aggregateType ?? event.aggregateType, event.eventType, event.schemaVersion);
        const problem = catalog.reloadProblem();
        const reread = problem ? ` (the directory could not be re-read: ${problem})` : '';
        return { ok: false, kind: 'unknown_schema', reason: `unknown event type ${event.eventType} v${event.schemaVersion}${known}: ${file} not found in ${catalog.dir}${reread}` };
      }
      if (event.aggregateType !== entry.aggregateType) {
        return { ok: false, kind: 'unknown_schema', reason: `event type ${event.eventType} belongs to aggregate type ${entry.aggregateType}, not ${event.aggregateType}` };
      }
      const env = envelopeValue(event);
      if ('problem' in env) return { ok: false, kind: 'invalid_payload', reason: env.problem };
      const payloadProblems = validationProblems(entry.payloadType, event.payload);
      if (payloadProblems.length > 0) return { ok: false, kind: 'invalid_payload', reason: payloadProblems.join('; ') };
      const omitted = omittedDefaults(entry.payloadType, event.payload, []);
      if (omitted.length > 0) {
        return {
          ok: false,
          kind: 'invalid_payload',
          reason: `${omitted.join(', ')}: missing; ${event.eventType} v${event.schemaVersion} gives ${omitted.length === 1 ? 'it a default' : 'them defaults'}, but the event's hash covers the payload as written, so a reader that fills in the default could not verify it: write every field explicitly`,
        };
      }
      let body: Buffer;
      try {
        body = entry.type.toBuffer(env.value);
      } catch {
        const problems = validationProblems(entry.type, env.value);
        return { ok: false, kind: 'invalid_payload', reason: problems.length > 0 ? problems.join('; ') : `${formatPath([])}: does not fit ${entry.subject} v${entry.version}` };
      }
      // Registry unreachable: OutboxError('REGISTRY_UNAVAILABLE') propagates (transient, the relay retries).
      const state = await idFor(entry);
      if (!('id' in state)) return { ok: false, kind: 'unknown_schema', reason: `schema of ${event.eventType} v${event.schemaVersion} ${state.rejected}` };
      let h = headers.get(state.id);
      if (!h) {
        h = header(state.id);
        headers.set(state.id, h);
      }
      return { ok: true, value: Buffer.concat([h, body], h.length + body.length), schemaId: state.id };
    },
  };
}
