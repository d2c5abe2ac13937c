import { isDeepStrictEqual } from 'node:util';

// Pure logic of `outbox audit history --diff` and of its state with provenance ("which event set each
// field"): a per-field diff of two folded states, and the fold of those diffs over a history. No I/O.

/** What an event did to one top-level field of the folded state. */
export type FieldChangeKind = 'added' | 'removed' | 'changed';

/** One field an event changed: `before` is absent when the field was added, `after` when it was removed. */
export interface FieldChange {
  field: string;
  kind: FieldChangeKind;
  before?: unknown;
  after?: unknown;
}

/** The event a field's value comes from, as the auditor sees it. */
export interface FieldSource {
  /** aggregate_version of the event. */
  version: number;
  eventType: string;
  /** ISO 8601. */
  occurredAt: string;
  actorId: string;
  eventId: string;
}

export interface FieldProvenance extends FieldSource {
  value: unknown;
}

/** A field the state no longer has: the event that removed it, and the value it had until then. */
export interface RemovedField extends FieldSource {
  lastValue: unknown;
}

/** The folded state after the last event of a history, each field with the event that set it. */
export interface StateWithProvenance {
  /** aggregate_version of the last event folded. */
  version: number;
  state: unknown;
  /** Every top-level field of `state`, in its order, with the event that last changed its value. */
  fields: Record<string, FieldProvenance>;
  /** Fields an event removed (and no later event set again), with that event. */
  removed: Record<string, RemovedField>;
}

/** An event of the history with the states the reducer folded before and after it. */
export interface FoldedEvent {
  event_id: string;
  aggregate_version: number;
  event_type: string;
  occurred_at: Date;
  actor_id: string;
  state_before: unknown;
  state_after: unknown;
}

/**
 * The field name under which a state that is not a plain object (a number, a string, an array) is
 * compared as a whole.
 */
export const WHOLE_STATE = '(state)';

/**
 * The top-level fields of a folded state. null/undefined is no fields; a plain object its own keys
 * (a key whose value is undefined counts as absent, as in JSON); anything else one field, WHOLE_STATE.
 */
export function stateFields(state: unknown): Map<string, unknown> {
  const fields = new Map<string, unknown>();
  if (state === null || state === undefined) return fields;
  if (typeof state !== 'object' || Array.isArray(state)) {
    fields.set(WHOLE_STATE, state);
    return fields;
  }
  for (const [k, v] of Object.entries(state as Record<string, unknown>)) if (v !== undefined) fields.set(k, v);
  return fields;
}

/**
 * The top-level fields whose value differs between two states (deep equality), in the order of the
 * state after, then the removed fields in the order of the state before.
 */
export function diffFields(before: unknown, after: unknown): FieldChange[] {
  const b = stateFields(before);
  const a = stateFields(after);
  const changes: FieldChange[] = [];
  for (const [field, value] of a) {
    if (!b.has(field)) changes.push({ field, kind: 'added', after: value });
    else if (!isDeepStrictEqual(b.get(field), value)) changes.push({ field, kind: 'changed', before: b.get(field), after: value });
  }
  for (const [field, value] of b) if (!a.has(field)) changes.push({ field, kind: 'removed', before: value });
  return changes;
}

function sourceOf(e: FoldedEvent): FieldSource {
  return { version: e.aggregate_version, eventType: e.event_type, occurredAt: e.occurred_at.toISOString(), actorId: e.actor_id, eventId: e.event_id };
}

/**
 * The state after the last event of `events` (in version order), with, for each top-level field, the
 * event that last changed its value: a field an event sets to the value it already had keeps the
 * earlier event. A field an event removes leaves `fields` and is listed in `removed` with that event
 * (until a later event sets it again). The first event adds every field of its state after (the state
 * before the first event is "no aggregate", even when the reducer starts from non-empty initial state).
 * Undefined for an empty history.
 */
export function stateWithProvenance(events: FoldedEvent[]): StateWithProvenance | undefined {
  const last = events[events.length - 1];
  if (!last) return undefined;
  const set = new Map<string, FieldProvenance>();
  const removed = new Map<string, RemovedField>();
  for (const e of events) {
    for (const c of diffFields(e.state_before, e.state_after)) {
      if (c.kind === 'removed') {
        set.delete(c.field);
        removed.set(c.field, { ...sourceOf(e), lastValue: c.before });
      } else {
        removed.delete(c.field);
        set.set(c.field, { value: c.after, ...sourceOf(e) });
      }
    }
  }
  // In the order of the final state; each value is the final state's own (equal to the change's after).
  const fields: Record<string, FieldProvenance> = {};
  for (const [field, value] of stateFields(last.state_after)) {
    const p = set.get(field);
    if (p) fields[field] = { ...p, value };
  }
  return { version: last.aggregate_version, state: last.state_after, fields, removed: Object.fromEntries(removed) };
}

/** The events of a history as of a time (see `historyAsOf`). */
export interface HistoryAsOf<E> {
  /** The events that occurred at or before the time, in version order (all of them without a time). */
  shown: E[];
  /** The longest run of versions from the first whose events all occurred at or before the time: the state as of then is theirs. */
  folded: E[];
  /**
   * Events that occurred at or before the time but follow an event that occurred after it (occurred_at
   * is not monotonic in the version: a transaction's now() is its start, and an application may set
   * occurredAt). They are shown, but not in the state as of then: folding them without the event
   * before them would give a state that never existed.
   */
  outOfOrder: E[];
}

/** Splits a history (in version order) at a time: which events to show, which make up the state as of then. */
export function historyAsOf<E extends { occurred_at: Date }>(events: E[], at: Date | undefined): HistoryAsOf<E> {
  if (!at) return { shown: events, folded: events, outOfOrder: [] };
  const t = at.getTime();
  const shown = events.filter((e) => e.occurred_at.getTime() <= t);
  const firstLater = events.findIndex((e) => e.occurred_at.getTime() > t);
  const folded = firstLater < 0 ? events : events.slice(0, firstLater);
  return { shown, folded, outOfOrder: shown.slice(folded.length) };
}

/** A value as the table shows it: JSON (strings quoted), so that "(none)" cannot be mistaken for one. */
export function showValue(value: unknown): string {
  const s = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  return s === undefined ? String(value) : s;
}

/** One change as a line: `field: before → after`, "(none)" for the missing side of an added or removed field. */
export function formatChange(c: FieldChange): string {
  const before = c.kind === 'added' ? '(none)' : showValue(c.before);
  const after = c.kind === 'removed' ? '(none)' : showValue(c.after);
  return `${c.field}: ${before} → ${after}`;
}
