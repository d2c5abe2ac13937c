import { OutboxError } from '../core/errors';
import type { UserRenamedV1, UserRenamedV2 } from './types';

/**
 * Upcasters: code that turns a payload of (event type, vN) into the payload of vN+1 when Avro schema
 * resolution cannot express the change (a split, a merge, a computed field). Consumers (the projector,
 * `loadAggregate`) run them after decoding, so handlers only ever see the latest version.
 *
 * A step vN -> vN+1 with an upcaster uses it; a step without one uses Avro resolution (aliases, defaults).
 * The schema change itself must still pass the registry's compatibility check (give new fields defaults).
 */
export type Upcaster = (payload: Record<string, unknown>) => Record<string, unknown>;

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

/** UserRenamed v1 -> v2: `name` is split at the first run of whitespace into first and last name. */
export function upcastUserRenamedV1(payload: Record<string, unknown>): Record<string, unknown> {
  const v1 = payload as unknown as UserRenamedV1;
  const name = typeof v1.name === 'string' ? v1.name.trim() : '';
  const m = /^(\S*)\s*([\s\S]*)$/.exec(name);
  const v2: UserRenamedV2 = { first_name: m?.[1] ?? '', last_name: m?.[2] ?? '' };
  return { ...v2 };
}

/** The project's upcasters. */
export function defaultUpcasters(): UpcasterRegistry {
  return createUpcasterRegistry().register('UserRenamed', 1, upcastUserRenamedV1);
}

const shared = defaultUpcasters();

/** Apply the project's upcaster `eventType` v`fromVersion` -> v`fromVersion + 1`. */
export function upcast(eventType: string, fromVersion: number, payload: Record<string, unknown>): Record<string, unknown> {
  return shared.upcast(eventType, fromVersion, payload);
}
