import { diffFields, formatChange, historyAsOf, stateFields, stateWithProvenance, WHOLE_STATE, type FoldedEvent } from '../../cli/state-diff';

// Pure logic of `outbox audit history --diff` and of the state with provenance: per-field diffs of two
// folded states (deep equality), and which event last changed each field.

function ev(version: number, eventType: string, before: unknown, after: unknown, actor = `actor-${version}`): FoldedEvent {
  return {
    event_id: `e${version}`,
    aggregate_version: version,
    event_type: eventType,
    occurred_at: new Date(Date.UTC(2025, 0, version, 3)),
    actor_id: actor,
    state_before: before,
    state_after: after,
  };
}

test('diffFields: added, changed and removed top-level fields, deep-equal values unchanged', () => {
  expect(diffFields(null, { a: 1, b: 'x' })).toEqual([
    { field: 'a', kind: 'added', after: 1 },
    { field: 'b', kind: 'added', after: 'x' },
  ]);
  const before = { a: 1, tags: ['p', 'q'], nested: { deep: { n: 1 } }, gone: true, same: null };
  const after = { a: 2, tags: ['p', 'q'], nested: { deep: { n: 2 } }, same: null, fresh: 0 };
  expect(diffFields(before, after)).toEqual([
    { field: 'a', kind: 'changed', before: 1, after: 2 },
    { field: 'nested', kind: 'changed', before: { deep: { n: 1 } }, after: { deep: { n: 2 } } },
    { field: 'fresh', kind: 'added', after: 0 },
    { field: 'gone', kind: 'removed', before: true },
  ]);
  expect(diffFields({ a: [1, { b: 2 }] }, { a: [1, { b: 2 }] })).toEqual([]);
  // null is a value, undefined is absence; a state becoming null removes every field.
  expect(diffFields({ a: null }, { a: undefined })).toEqual([{ field: 'a', kind: 'removed', before: null }]);
  expect(diffFields({ a: 1, b: 2 }, null)).toEqual([
    { field: 'a', kind: 'removed', before: 1 },
    { field: 'b', kind: 'removed', before: 2 },
  ]);
});

test('a state that is not an object is compared as a whole', () => {
  expect(stateFields(5)).toEqual(new Map([[WHOLE_STATE, 5]]));
  expect(stateFields(undefined).size).toBe(0);
  expect(diffFields(5, 7)).toEqual([{ field: WHOLE_STATE, kind: 'changed', before: 5, after: 7 }]);
  expect(diffFields([1], [1, 2])).toEqual([{ field: WHOLE_STATE, kind: 'changed', before: [1], after: [1, 2] }]);
});

test('formatChange: field: before → after, values as JSON, (none) for the missing side', () => {
  expect(formatChange({ field: 'email', kind: 'changed', before: 'a@x', after: 'b@x' })).toBe('email: "a@x" → "b@x"');
  expect(formatChange({ field: 'n', kind: 'added', after: 3 })).toBe('n: (none) → 3');
  expect(formatChange({ field: 'o', kind: 'removed', before: { k: [1] } })).toBe('o: {"k":[1]} → (none)');
  expect(formatChange({ field: 'z', kind: 'changed', before: null, after: 'null' })).toBe('z: null → "null"');
});

test('stateWithProvenance: each field with the event that last changed its value', () => {
  const s1 = { email: 'a@x', name: 'Ann', active: true, version: 1 };
  const s2 = { email: 'b@x', name: 'Ann', active: true, version: 2 };
  // v3 sets the name to the value it already had: the field keeps v1 as its source.
  const s3 = { email: 'b@x', name: 'Ann', active: true, version: 3 };
  const s4 = { email: 'b@x', name: 'Ann', active: false, version: 4 };
  const events = [ev(1, 'Registered', null, s1), ev(2, 'EmailChanged', s1, s2, 'support-7'), ev(3, 'Renamed', s2, s3), ev(4, 'Deactivated', s3, s4)];

  const at2 = stateWithProvenance(events.slice(0, 2))!;
  expect(at2.version).toBe(2);
  expect(at2.state).toEqual(s2);
  expect(at2.fields.email).toEqual({
    value: 'b@x',
    version: 2,
    eventType: 'EmailChanged',
    occurredAt: '2025-01-02T03:00:00.000Z',
    actorId: 'support-7',
    eventId: 'e2',
  });
  expect(at2.fields.name).toMatchObject({ value: 'Ann', version: 1, eventType: 'Registered' });

  const all = stateWithProvenance(events)!;
  expect(Object.keys(all.fields)).toEqual(['email', 'name', 'active', 'version']);
  expect(Object.fromEntries(Object.entries(all.fields).map(([k, f]) => [k, f.version]))).toEqual({ email: 2, name: 1, active: 4, version: 4 });
  expect(all.removed).toEqual({});
  expect(stateWithProvenance([])).toBeUndefined();
});

test('a removed field leaves the state and is listed with the event that removed it, until it is set again', () => {
  const s1 = { a: 1, note: 'hi' };
  const s2 = { a: 1 };
  const s3 = { a: 1, note: 'back' };
  const removed = stateWithProvenance([ev(1, 'Created', null, s1), ev(2, 'NoteCleared', s1, s2)])!;
  expect(removed.fields).toEqual({ a: expect.objectContaining({ version: 1 }) });
  expect(removed.removed).toEqual({
    note: { lastValue: 'hi', version: 2, eventType: 'NoteCleared', occurredAt: '2025-01-02T03:00:00.000Z', actorId: 'actor-2', eventId: 'e2' },
  });
  const again = stateWithProvenance([ev(1, 'Created', null, s1), ev(2, 'NoteCleared', s1, s2), ev(3, 'Noted', s2, s3)])!;
  expect(again.removed).toEqual({});
  expect(again.fields.note).toMatchObject({ value: 'back', version: 3 });
  // An aggregate deleted (state null): no fields, every field removed by that event.
  const deleted = stateWithProvenance([ev(1, 'Created', null, s1), ev(2, 'Deleted', s1, null)])!;
  expect(deleted).toMatchObject({ version: 2, state: null, fields: {} });
  expect(Object.keys(deleted.removed)).toEqual(['a', 'note']);
});

test('historyAsOf: events shown at a time, and the run of versions whose fold is the state as of then', () => {
  const e = (version: number, day: number) => ({ aggregate_version: version, occurred_at: new Date(Date.UTC(2025, 0, day)) });
  const history = [e(1, 1), e(2, 5), e(3, 3), e(4, 2), e(5, 9)];
  expect(historyAsOf(history, undefined)).toEqual({ shown: history, folded: history, outOfOrder: [] });
  // Versions 3 and 4 occurred before the 4th, but after version 2, which occurred after it.
  const at4 = historyAsOf(history, new Date(Date.UTC(2025, 0, 4)));
  expect(at4.shown.map((x) => x.aggregate_version)).toEqual([1, 3, 4]);
  expect(at4.folded.map((x) => x.aggregate_version)).toEqual([1]);
  expect(at4.outOfOrder.map((x) => x.aggregate_version)).toEqual([3, 4]);
  // At or before: an event at exactly the time is in.
  const at5 = historyAsOf(history, new Date(Date.UTC(2025, 0, 5)));
  expect({ shown: at5.shown.length, folded: at5.folded.length, outOfOrder: at5.outOfOrder.length }).toEqual({ shown: 4, folded: 4, outOfOrder: 0 });
  const before = historyAsOf([e(1, 5), e(2, 1)], new Date(Date.UTC(2025, 0, 2)));
  expect({ shown: before.shown.length, folded: before.folded.length, outOfOrder: before.outOfOrder.length }).toEqual({ shown: 1, folded: 0, outOfOrder: 1 });
  expect(historyAsOf([e(1, 5)], new Date(Date.UTC(2025, 0, 2))).shown).toEqual([]);
});
