import * as avsc from 'avsc';
import type { RegistrySettings } from '../core/config';
import { errorMessage } from '../core/errors';
import type { Logger } from '../core/logger';
import type { CatalogEntry, SchemaCatalog } from './catalog';
import { schemaById } from './registry-http';
import type { DecodedEvent } from '../event/envelope';
import { defaultUpcasters, type UpcasterRegistry } from './upcasters';
import { validationProblems } from './validate';

export type DecodeResult = { ok: true; schemaId: number; event: DecodedEvent } | { ok: false; kind: 'bad_magic' | 'unknown_schema_id' | 'undecodable'; reason: string };

export interface EventDecoder {
  /**
   * Decode a Kafka message value (Confluent wire format). Bad input is a returned value; an unreachable
   * registry throws OutboxError('REGISTRY_UNAVAILABLE') (transient: retry the message).
   */
  decode(buffer: Buffer): Promise<DecodeResult>;
}

export interface EventDecoderOptions {
  registry: RegistrySettings;
  catalog: SchemaCatalog;
  /** Upcasters vN -> vN+1 (default: the project's, from schemas/upcasters.ts). */
  upcasters?: UpcasterRegistry;
  logger: Logger;
}

type Writer = { ok: true; type: avsc.Type; family: CatalogEntry[] } | { ok: false; kind: 'unknown_schema_id' | 'undecodable'; reason: string };

/** How messages of one writer schema and version become the latest local shape. */
type Plan = { ok: true; target: CatalogEntry; resolver: avsc.Resolver; latest: CatalogEntry } | { ok: false; reason: string };

/** Raw envelope fields as avsc returns them. */
interface RawEnvelope {
  event_id: string;
  event_type: string;
  schema_version: number;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: number;
  occurred_at: number;
  actor_id: string | null;
  trace_id: string | null;
  correlation_id: string | null;
  causation_id: string | null;
  traceparent: string | null;
  hash: string;
  prev_hash: string;
  payload: Record<string, unknown>;
}

/**
 * Decoding resolves the WRITER schema (fetched by id, cached) to a local READER schema, then walks the
 * remaining versions up to the latest local one: a step with a registered upcaster runs it, a step without
 * one uses Avro resolution (aliases, defaults). The reader of the first decode is the latest version
 * reachable by resolution alone, so an event without upcaster steps is decoded once, straight into the
 * latest shape.
 */
export function createEventDecoder(options: EventDecoderOptions): EventDecoder {
  const { registry, catalog } = options;
  const upcasters = options.upcasters ?? defaultUpcasters();
  const logger = options.logger.child({ component: 'event-decoder' });
  const writers = new Map<number, Promise<Writer>>();
  const plans = new Map<string, Plan>();
  const writerVersions = new Map<number, number>();
  const stepResolvers = new Map<string, avsc.Resolver>();

  async function loadWriter(id: number): Promise<Writer> {
    const text = await schemaById(registry, id);
    if (text === undefined) return { ok: false, kind: 'unknown_schema_id', reason: `schema id ${id} is not known to the schema registry` };
    let type: avsc.Type;
    try {
      type = avsc.Type.forSchema(JSON.parse(text) as avsc.Schema);
    } catch (err) {
      return { ok: false, kind: 'undecodable', reason: `schema id ${id} is not a usable Avro schema: ${errorMessage(err)}` };
    }
    const name = type.name;
    const family = name === undefined ? [] : catalog.bySubject(name);
    if (family.length === 0) {
      return { ok: false, kind: 'unknown_schema_id', reason: `schema id ${id} (${name ?? type.typeName}) is not an event type of this consumer's schema catalog` };
    }
    logger.debug({ schemaId: id, subject: name }, 'loaded writer schema');
    return { ok: true, type, family };
  }

  function writer(id: number): Promise<Writer> {
    let p = writers.get(id);
    if (!p) {
      p = loadWriter(id);
      writers.set(id, p);
      // Do not remember transient failures (registry unreachable).
      p.catch(() => writers.delete(id));
    }
    return p;
  }

  function planFor(id: number, w: Extract<Writer, { ok: true }>, writerVersion: number): Plan {
    const key = `${id}/${writerVersion}`;
    const cached = plans.get(key);
    if (cached) return cached;
    const latest = w.family[w.family.length - 1]!;
    let target = latest;
    if (writerVersion <= latest.version) {
      // First version >= writerVersion that has an upcaster step, else the latest.
      for (const e of w.family) {
        if (e.version >= writerVersion && upcasters.has(e.eventType, e.version)) {
          target = e;
          break;
        }
      }
    }
    let plan: Plan;
    try {
      plan = { ok: true, target, latest, resolver: target.type.createResolver(w.type) };
    } catch (err) {
      // Not directly readable as `target` (compatibility is only checked step by step): read it as its own
      // local version and walk the steps.
      const own = w.family.find((e) => e.version === writerVersion);
      if (own && own !== target) {
        try {
          plan = { ok: true, target: own, latest, resolver: own.type.createResolver(w.type) };
          plans.set(key, plan);
          return plan;
        } catch {
          /* report the first error */
        }
      }
      const why = writerVersion > latest.version ? `written as v${writerVersion}, newer than this consumer's latest v${latest.version}, and` : '';
      plan = { ok: false, reason: `${latest.eventType}: schema id ${id} ${why} not readable as local v${target.version}: ${errorMessage(err)}`.replace(/\s+/g, ' ') };
    }
    plans.set(key, plan);
    return plan;
  }

  function stepResolve(from: CatalogEntry, to: CatalogEntry, payload: Record<string, unknown>): Record<string, unknown> {
    const key = `${from.subject}/${from.version}->${to.version}`;
    let r = stepResolvers.get(key);
    if (!r) {
      r = to.payloadType.createResolver(from.payloadType);
      stepResolvers.set(key, r);
    }
    return to.payloadType.fromBuffer(from.payloadType.toBuffer(payload), r) as Record<string, unknown>;
  }

  /** Walk from `start` to the latest version: upcasters where registered, Avro resolution in between. */
  function lift(family: CatalogEntry[], start: CatalogEntry, payload: Record<string, unknown>): { payload: Record<string, unknown> } | { problem: string } {
    const latest = family[family.length - 1]!;
    let current = start;
    let p = payload;
    while (current.version < latest.version) {
      if (upcasters.has(current.eventType, current.version)) {
        const next = family.find((e) => e.version === current.version + 1)!;
        let out: Record<string, unknown>;
        try {
          out = upcasters.upcast(current.eventType, current.version, p);
        } catch (err) {
          return { problem: `upcaster ${current.eventType} v${current.version}->v${next.version} failed: ${errorMessage(err)}` };
        }
        const problems = validationProblems(next.payloadType, out);
        if (problems.length > 0) return { problem: `upcaster ${current.eventType} v${current.version}->v${next.version} produced an invalid payload: ${problems.join('; ')}` };
        p = next.payloadType.clone(out) as Record<string, unknown>;
        current = next;
      } else {
        const next = family.find((e) => e.version > current.version && upcasters.has(e.eventType, e.version)) ?? latest;
        try {
          p = stepResolve(current, next, p);
        } catch (err) {
          return { problem: `${current.eventType} v${current.version} is not readable as v${next.version}: ${errorMessage(err)}` };
        }
        current = next;
      }
    }
    return { payload: p };
  }

  return {
    async decode(buffer) {
      if (buffer.length < 5 || buffer[0] !== 0) {
        return {
          ok: false,
          kind: 'bad_magic',
          reason: buffer.length < 5 ? `message of ${buffer.length} bytes is shorter than the 5-byte header` : `magic byte is ${buffer[0]}, expected 0`,
        };
      }
      const id = buffer.readInt32BE(1);
      const w = await writer(id);
      if (!w.ok) return { ok: false, kind: w.kind, reason: w.reason };
      const body = buffer.subarray(5);

      let writerVersion = writerVersions.get(id);
      if (writerVersion === undefined) {
        try {
          writerVersion = (w.type.fromBuffer(body) as RawEnvelope).schema_version;
        } catch (err) {
          return { ok: false, kind: 'undecodable', reason: `schema id ${id}: ${errorMessage(err)}` };
        }
        if (!Number.isInteger(writerVersion)) return { ok: false, kind: 'undecodable', reason: `schema id ${id}: envelope has no schema_version` };
        writerVersions.set(id, writerVersion);
      }
      let plan = planFor(id, w, writerVersion);
      if (!plan.ok) return { ok: false, kind: 'undecodable', reason: plan.reason };
      let raw: RawEnvelope;
      try {
        raw = plan.target.type.fromBuffer(body, plan.resolver) as RawEnvelope;
        if (raw.schema_version !== writerVersion) {
          // Another producer used one schema id for several versions: plan for this one.
          writerVersion = raw.schema_version;
          plan = planFor(id, w, writerVersion);
          if (!plan.ok) return { ok: false, kind: 'undecodable', reason: plan.reason };
          raw = plan.target.type.fromBuffer(body, plan.resolver) as RawEnvelope;
        }
      } catch (err) {
        return { ok: false, kind: 'undecodable', reason: `schema id ${id}: ${errorMessage(err)}` };
      }
      // The outbox requires both; a producer that left them out does not meet the event contract.
      if (raw.actor_id === null || raw.actor_id === '')
        return { ok: false, kind: 'undecodable', reason: `schema id ${id}: actor_id is missing (every event names the actor that caused it)` };
      if (raw.trace_id === null || raw.trace_id === '')
        return { ok: false, kind: 'undecodable', reason: `schema id ${id}: trace_id is missing (every event carries the trace id of its request)` };
      const lifted = lift(w.family, plan.target, raw.payload);
      if ('problem' in lifted) return { ok: false, kind: 'undecodable', reason: lifted.problem };

      const event: DecodedEvent = {
        eventId: raw.event_id,
        eventType: raw.event_type,
        schemaVersion: plan.latest.version,
        writerSchemaVersion: raw.schema_version,
        aggregateType: raw.aggregate_type,
        aggregateId: raw.aggregate_id,
        aggregateVersion: raw.aggregate_version,
        occurredAt: new Date(Math.floor(raw.occurred_at / 1000)),
        occurredAtMicros: raw.occurred_at,
        actorId: raw.actor_id,
        traceId: raw.trace_id,
        correlationId: raw.correlation_id,
        causationId: raw.causation_id,
        traceparent: raw.traceparent,
        hash: Buffer.from(raw.hash, 'hex'),
        prevHash: Buffer.from(raw.prev_hash, 'hex'),
        payload: { ...lifted.payload },
      };
      return { ok: true, schemaId: id, event };
    },
  };
}
