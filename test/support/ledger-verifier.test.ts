import { analyse, type LedgerEntry } from './delivery-check';
import type { ReadMessage } from './kafka';
import { compareProjections, foldLedgerUsers, type ExpectedUser, type LedgerRow, type UserRow } from './ledger-verifier';

// The verifier on hand-built ledgers and topics (no servers): each class of defect it claims to count
// is shown to fire on an input with exactly one such defect, and a clean input reports all zeros.

interface Ev {
  id: string;
  agg: string;
  v: number;
}

/** Ledger: user a v1..v3, user b v1..v2. */
const EVENTS: Ev[] = [
  { id: 'a1', agg: 'a', v: 1 },
  { id: 'a2', agg: 'a', v: 2 },
  { id: 'a3', agg: 'a', v: 3 },
  { id: 'b1', agg: 'b', v: 1 },
  { id: 'b2', agg: 'b', v: 2 },
];

function ledger(events: Ev[] = EVENTS): Map<string, LedgerEntry> {
  return new Map(events.map((e) => [e.id, { aggregate_type: 'user', aggregate_id: e.agg, aggregate_version: String(e.v) }]));
}

function byId(id: string): Ev {
  const e = EVENTS.find((x) => x.id === id);
  if (!e) throw new Error(`no event ${id}`);
  return e;
}

/** Messages on topic `t`: each entry is an event id, or [event id, partition], or a full override. */
function topic(
  ...entries: Array<string | [string, number] | { id: string; partition?: number; drop?: string[]; headers?: Record<string, string>; value?: string }>
): ReadMessage[] {
  const next = new Map<number, number>();
  return entries.map((raw) => {
    const o = typeof raw === 'string' ? { id: raw } : Array.isArray(raw) ? { id: raw[0], partition: raw[1] } : raw;
    const e = byId(o.id);
    const partition = o.partition ?? (e.agg === 'a' ? 0 : 1);
    const offset = next.get(partition) ?? 0;
    next.set(partition, offset + 1);
    const headers: Record<string, Buffer> = {};
    const all: Record<string, string> = { event_id: e.id, aggregate_type: 'user', aggregate_id: e.agg, aggregate_version: String(e.v), ...o.headers };
    for (const [k, v] of Object.entries(all)) if (!o.drop?.includes(k)) headers[k] = Buffer.from(v);
    return {
      topic: 't',
      partition,
      offset: String(offset),
      message: { key: Buffer.from(e.agg), value: Buffer.from(o.value ?? `value of ${e.id}`), headers, timestamp: '0', attributes: 0, offset: String(offset) },
    };
  });
}

const CLEAN = { lost: 0, duplicates: 0, divergent: 0, reordered: 0, malformed: 0, unexpected: 0 };

describe('delivery check (ledger vs topic)', () => {
  test('a clean topic: all zeros', () => {
    expect(analyse(ledger(), topic('a1', 'b1', 'a2', 'a3', 'b2'))).toMatchObject({ committed: 5, messages: 5, ...CLEAN });
  });

  test('one committed event missing from the topic: one lost, named', () => {
    const r = analyse(ledger(), topic('a1', 'a2', 'a3', 'b1'));
    expect(r).toMatchObject({ ...CLEAN, lost: 1, lostEventIds: ['b2'] });
  });

  test('one event twice (an identical redelivery): one duplicate, not divergent, not reordered', () => {
    const r = analyse(ledger(), topic('a1', 'a2', 'a3', 'b1', 'b2', 'b2'));
    expect(r).toMatchObject({ ...CLEAN, duplicates: 1, duplicateEventIds: ['b2'] });
  });

  test('a replayed run after a crash (a1 a2 a3 a1 a2 a3) is duplicates in order, not a reorder', () => {
    const r = analyse(ledger(), topic('a1', 'a2', 'a3', 'a1', 'a2', 'a3', 'b1', 'b2'));
    expect(r).toMatchObject({ ...CLEAN, duplicates: 3 });
  });

  test('a second copy with other bytes under a known event id is divergent', () => {
    const r = analyse(ledger(), topic('a1', 'a2', 'a3', 'b1', 'b2', { id: 'b2', value: 'something else' }));
    expect(r).toMatchObject({ ...CLEAN, duplicates: 1, divergent: 1 });
  });

  test('two events of an aggregate swapped on the topic: one reordered aggregate', () => {
    const r = analyse(ledger(), topic('a1', 'a3', 'a2', 'b1', 'b2'));
    expect(r).toMatchObject({ ...CLEAN, reordered: 1, reorderedAggregates: ['user/a'] });
  });

  test('first copies in order but the second copies swapped: reordered', () => {
    const r = analyse(ledger(), topic('a1', 'a2', 'a3', 'a3', 'a2', 'b1', 'b2'));
    expect(r).toMatchObject({ ...CLEAN, duplicates: 2, reordered: 1, reorderedAggregates: ['user/a'] });
  });

  test('an aggregate spread over two partitions is reordered even when each partition looks ordered', () => {
    const r = analyse(ledger(), topic('a1', 'a2', ['a3', 1], 'b1', 'b2'));
    expect(r).toMatchObject({ ...CLEAN, reordered: 1, reorderedAggregates: ['user/a'] });
  });

  test('a message without its aggregate_version header is malformed (its order is checked with the ledger version)', () => {
    const r = analyse(ledger(), topic('a1', { id: 'a2', drop: ['aggregate_version'] }, 'a3', 'b1', 'b2'));
    expect(r).toMatchObject({ ...CLEAN, malformed: 1, malformedEventIds: ['a2'] });
    // ... so a swap is not hidden by the missing header
    expect(analyse(ledger(), topic('a1', { id: 'a3', drop: ['aggregate_version'] }, 'a2', 'b1', 'b2'))).toMatchObject({ ...CLEAN, malformed: 1, reordered: 1 });
  });

  test('without the header and without a ledger version the order cannot be shown: malformed and reordered', () => {
    const noVersions = new Map([...ledger()].map(([id, e]) => [id, { aggregate_type: e.aggregate_type, aggregate_id: e.aggregate_id }]));
    const r = analyse(noVersions, topic('a1', { id: 'a2', drop: ['aggregate_version'] }, 'a3', 'b1', 'b2'));
    expect(r).toMatchObject({ ...CLEAN, malformed: 1, reordered: 1, reorderedAggregates: ['user/a'] });
  });

  test('a header version that disagrees with the ledger is malformed', () => {
    const r = analyse(ledger(), topic('a1', 'a2', { id: 'a3', headers: { aggregate_version: '7' } }, 'b1', 'b2'));
    expect(r).toMatchObject({ ...CLEAN, malformed: 1, malformedEventIds: ['a3'] });
  });

  test('a message of an event not in the ledger, and one without event_id, are unexpected', () => {
    const r = analyse(ledger(EVENTS.filter((e) => e.id !== 'b2')), topic('a1', 'a2', 'a3', 'b1', 'b2', { id: 'a1', drop: ['event_id'] }));
    expect(r).toMatchObject({ ...CLEAN, committed: 4, unexpected: 2 });
  });
});

// ---- projections: audit_log + users against a fold of the ledger ----

const T0 = new Date('2026-01-01T00:00:00Z');

function row(id: string, agg: string, v: number, eventType: string, payload: Record<string, unknown>): LedgerRow {
  return { event_id: id, aggregate_type: 'user', aggregate_id: agg, aggregate_version: String(v), event_type: eventType, payload, occurred_at: T0 };
}

const LEDGER: LedgerRow[] = [
  row('a1', 'a', 1, 'UserRegistered', { email: 'a@example.com', name: 'A A' }),
  row('a2', 'a', 2, 'UserEmailChanged', { new_email: 'a2@example.com', verified: true }),
  row('a3', 'a', 3, 'UserDeactivated', { reason: 'left' }),
  row('b1', 'b', 1, 'UserRegistered', { email: 'b@example.com', name: 'B B' }),
  row('b2', 'b', 2, 'UserRenamed', { first_name: 'Bea', last_name: 'B' }),
];

/** The test's own fold of LEDGER, by hand: what the read model must hold. */
const handFold = (): Map<string, ExpectedUser> =>
  new Map([
    ['a', { email: 'a2@example.com', active: false, version: 3, eventsApplied: 3 }],
    ['b', { email: 'b@example.com', active: true, version: 2, eventsApplied: 2 }],
  ]);

const GOOD_USERS: UserRow[] = [
  { user_id: 'a', email: 'a2@example.com', active: false, version: '3', events_applied: 3 },
  { user_id: 'b', email: 'b@example.com', active: true, version: '2', events_applied: 2 },
];

const ALL_AUDITED = { applied: 5, extra: 0 };
const PROJECTIONS_CLEAN = { double_applied: 0, not_applied: 0, projection_mismatch: 0 };

describe('projection check (read models vs an independent fold of the ledger)', () => {
  test('read models equal to the fold: all zeros', () => {
    expect(compareProjections({ ledger: LEDGER, audit: ALL_AUDITED, users: GOOD_USERS, fold: handFold })).toMatchObject(PROJECTIONS_CLEAN);
  });

  test("the verifier's default fold agrees with the hand fold", () => {
    expect(foldLedgerUsers(LEDGER)).toEqual(handFold());
    expect(compareProjections({ ledger: LEDGER, audit: ALL_AUDITED, users: GOOD_USERS })).toMatchObject(PROJECTIONS_CLEAN);
  });

  test('an event applied twice to users (events_applied one too many): one double-applied', () => {
    const users = GOOD_USERS.map((u) => (u.user_id === 'b' ? { ...u, events_applied: 3 } : u));
    expect(compareProjections({ ledger: LEDGER, audit: ALL_AUDITED, users, fold: handFold })).toMatchObject({ ...PROJECTIONS_CLEAN, double_applied: 1 });
  });

  test('an event with two audit_log rows: one double-applied', () => {
    expect(compareProjections({ ledger: LEDGER, audit: { applied: 5, extra: 1 }, users: GOOD_USERS, fold: handFold })).toMatchObject({ ...PROJECTIONS_CLEAN, double_applied: 1 });
  });

  test('a user row that differs from the fold (the email change not applied): one mismatch, named', () => {
    const users = GOOD_USERS.map((u) => (u.user_id === 'a' ? { ...u, email: 'a@example.com' } : u));
    expect(compareProjections({ ledger: LEDGER, audit: ALL_AUDITED, users, fold: handFold })).toMatchObject({
      ...PROJECTIONS_CLEAN,
      projection_mismatch: 1,
      mismatchedUsers: ['a'],
    });
  });

  test('an event missing from audit_log and a user missing from users: not applied', () => {
    expect(compareProjections({ ledger: LEDGER, audit: { applied: 4, extra: 0 }, users: GOOD_USERS, fold: handFold })).toMatchObject({ ...PROJECTIONS_CLEAN, not_applied: 1 });
    expect(compareProjections({ ledger: LEDGER, audit: ALL_AUDITED, users: GOOD_USERS.slice(0, 1), fold: handFold })).toMatchObject({ ...PROJECTIONS_CLEAN, not_applied: 1 });
  });

  test('the injected fold is what the read model is compared with (a wrong expectation shows as a mismatch)', () => {
    const wrong = (): Map<string, ExpectedUser> => new Map([...handFold()].map(([k, u]) => [k, k === 'b' ? { ...u, email: 'other@example.com' } : u]));
    expect(compareProjections({ ledger: LEDGER, audit: ALL_AUDITED, users: GOOD_USERS, fold: wrong })).toMatchObject({
      ...PROJECTIONS_CLEAN,
      projection_mismatch: 1,
      mismatchedUsers: ['b'],
    });
  });
});
