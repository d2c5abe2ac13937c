import { OutboxError } from '../core/errors';

/**
 * Upcasters: code that turns a payload of (event type, vN) into the payload of vN+1 when Avro schema
 * resolution cannot express the change (a split, a merge, a computed field). Consumers (the projector,
 * `loadAggregate`) run them after decoding, so handlers only ever see the latest version.
 *
 * A step vN -> vN+1 with an upcaster uses it; a step without one uses Avro resolution (aliases, defaults).
 * The schema change itself must still pass the registry's compatibility check (give new fields defaults).
 */
export type Upcaster = (payload: Record<string, unknown>) => Record<string, unknown>;

/** Upcasters by event type and the version they upcast from: `{ InvoiceIssued: { 1: (v1) => v2 } }`. */
export type UpcasterMap = Record<string, Record<number, Upcaster>>;

export interface UpcasterRegistry {
  /** Register the upcaster from `fromVersion` to `fromVersion + 1` of `eventType` (once per step). */
  register(eventType: string, fromVersion: number, fn: Upcaster): UpcasterRegistry;
  has(eventType: string, fromVersion: number): boolean;
  /** Apply the upcaster vN -> vN+1; an OutboxError('SCHEMA_UNKNOWN') if none is registered. */
  upcast(eventType: string, fromVersion: number, payload: Record<string, unknown>): Record<string, unknown>;
  /** Steps registered, as `EventType vN->vN+1`. */
  list(): string[];
}

export function createUpcasterRegistry(): UpcasterRegistry {
  const map = new Map<string, Upcaster>();
  const key = (t: string, v: number): string => `${t} v${v}`;
  const reg: UpcasterRegistry = {
    register(eventType, fromVersion, fn) {
      if (!Number.isInteger(fromVersion) || fromVersion < 1) throw new OutboxError('CONFIG_INVALID', `upcaster ${eventType} from v${fromVersion}: version must be >= 1`);
      if (map.has(key(eventType, fromVersion))) throw new OutboxError('CONFIG_INVALID', `upcaster ${eventType} v${fromVersion}->v${fromVersion + 1} is registered twice`);
      map.set(key(eventType, fromVersion), fn);
      return reg;
    },
    has: (eventType, fromVersion) => map.has(key(eventType, fromVersion)),
    upcast(eventType, fromVersion, payload) {
      const fn = map.get(key(eventType, fromVersion));
      if (!fn) throw new OutboxError('SCHEMA_UNKNOWN', `no upcaster for ${eventType} v${fromVersion}->v${fromVersion + 1}`, { details: { eventType, fromVersion } });
      return fn(payload);
    },
    list: () => [...map.keys()].sort().map((k) => k.replace(/ v(\d+)$/, (_m, v: string) => ` v${v}->v${Number(v) + 1}`)),
  };
  return reg;
}

/** A registry holding the steps of an upcaster map `{ EventType: { fromVersion: fn } }`. */
export function upcasterRegistryFrom(map: UpcasterMap): UpcasterRegistry {
  const reg = createUpcasterRegistry();
  for (const [eventType, steps] of Object.entries(map)) {
    for (const [from, fn] of Object.entries(steps)) reg.register(eventType, Number(from), fn);
  }
  return reg;
}

/** The configured upcasters: those of the config module (OUTBOX_CONFIG or outbox.config.* in the working directory), else none. */
export function defaultUpcasters(): UpcasterRegistry {
  const { environmentDomain } = require('../core/config-module') as typeof import('../core/config-module');
  const upcasters = environmentDomain().config.upcasters;
  if (upcasters === undefined) return createUpcasterRegistry();
  return typeof (upcasters as UpcasterRegistry).upcast === 'function' ? (upcasters as UpcasterRegistry) : upcasterRegistryFrom(upcasters as UpcasterMap);
}
