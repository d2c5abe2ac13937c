import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { useTestDatabase } from '../support/isolation';
import { childEnv, emptyEnvFile, REPO, runOutbox } from './run-outbox';

// `outbox audit history --at / --diff` as an auditor runs it (a child process against a per-file
// database): "why did this record change at 3:00 AM" — the state as of a time, each field with the
// event that set it, and per event only the fields it changed. The `user` states are folded with the
// users-service reducer (outbox.config.ts of the checkout); a `ticket` reducer in a config module of
// this file's own removes a field and throws on one event type; `invoice` has no reducer at all.
const db = useTestDatabase({ poolSize: 2 });
const ENV_FILE = emptyEnvFile();
const env = () => childEnv({ OUTBOX_ENV_FILE: ENV_FILE, DATABASE_URL: db.url });
const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-audit-history-'));
const ticketsDir = path.join(dir, 'tickets');
const emptyDir = path.join(dir, 'empty');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Inserted {
  event_id: string;
}

async function insert(type: string, id: string, eventType: string, payload: Record<string, unknown>, actor: string, occurredAt: string): Promise<Inserted> {
  const { rows } = await db.pool.query<Inserted>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id, occurred_at)
     VALUES ($1, $2, $3, 1, $4, $5, 'trace-h', 'req-h', $6) RETURNING event_id::text`,
    [type, id, eventType, JSON.stringify(payload), actor, occurredAt],
  );
  return rows[0]!;
}

const ids: Record<string, Inserted> = {};

beforeAll(async () => {
  ids.registered = await insert('user', 'u1', 'UserRegistered', { email: 'ann@example.com', name: 'Ann Lee' }, 'service:signup', '2025-01-01T10:00:00Z');
  ids.night = await insert('user', 'u1', 'UserEmailChanged', { email: 'mallory@example.com' }, 'user:support-7', '2025-01-02T03:00:00Z');
  ids.renamed = await insert('user', 'u1', 'UserRenamed', { name: 'Ann Smith' }, 'user:u1', '2025-01-03T10:00:00Z');
  // occurred_at is not monotonic in the version (a transaction's now() is its start; occurredAt can be set).
  await insert('user', 'u2', 'UserRegistered', { email: 'cy@example.com', name: 'Cy Young' }, 'service:signup', '2025-01-01T10:00:00Z');
  await insert('user', 'u2', 'UserEmailChanged', { email: 'cy@late.example' }, 'user:late', '2025-01-05T10:00:00Z');
  await insert('user', 'u2', 'UserRenamed', { name: 'Cy Old' }, 'user:early', '2025-01-03T10:00:00Z');
  await insert('user', 'u3', 'UserRegistered', { email: 'di@example.com', name: 'Di' }, 'service:signup', '2025-01-05T10:00:00Z');
  await insert('user', 'u3', 'UserRenamed', { name: 'Di Ng' }, 'user:early', '2025-01-01T10:00:00Z');
  await insert('invoice', 'i1', 'InvoiceIssued', { amount_cents: 100 }, 'billing:1', '2025-01-01T10:00:00Z');
  ids.opened = await insert('ticket', 't1', 'TicketOpened', { title: 'printer' }, 'user:ann', '2025-01-01T10:00:00Z');
  ids.assigned = await insert('ticket', 't1', 'TicketAssigned', { to: 'bob' }, 'user:lead', '2025-01-01T11:00:00Z');
  ids.unassigned = await insert('ticket', 't1', 'TicketUnassigned', {}, 'user:bob', '2025-01-01T12:00:00Z');
  await insert('ticket', 't2', 'TicketOpened', { title: 'boom' }, 'user:ann', '2025-01-01T10:00:00Z');
  await insert('ticket', 't2', 'Boom', {}, 'user:ann', '2025-01-01T11:00:00Z');
  mkdirSync(ticketsDir, { recursive: true });
  mkdirSync(emptyDir, { recursive: true });
  writeFileSync(
    path.join(ticketsDir, 'outbox.config.js'),
    `const { defineConfig, defineReducer } = require(${JSON.stringify(path.join(REPO, 'index.ts'))});
const ticket = defineReducer({
  aggregateType: 'ticket',
  version: 1,
  initial: null,
  evolve: (s, e) => {
    if (e.eventType === 'TicketOpened') return { title: e.payload.title, open: true };
    if (e.eventType === 'TicketAssigned') return { ...s, assignee: e.payload.to };
    if (e.eventType === 'TicketUnassigned') { const { assignee, ...rest } = s; return rest; }
    throw new Error('cannot fold ' + e.eventType);
  },
});
module.exports = defineConfig({ schemasDir: 'schemas', reducers: [ticket] });
`,
  );
});

interface Provenance {
  value: unknown;
  version: number;
  eventType: string;
  occurredAt: string;
  actorId: string;
  eventId: string;
}
interface History {
  at: string | null;
  events: Array<{ aggregate_version: number; state_after?: unknown; changes?: Array<{ field: string; kind: string; before?: unknown; after?: unknown }> }>;
  asOf: {
    at: string | null;
    version: number;
    state: unknown;
    fields: Record<string, Provenance>;
    removed: Record<string, Provenance & { lastValue: unknown }>;
    outOfOrder: number[];
  } | null;
  stateUnavailable?: string;
}

test('--at: the state as of then, each field with the event that last changed it (json and table)', async () => {
  const [json, table, now] = await Promise.all([
    runOutbox(['audit', 'history', 'user/u1', '--at', '2025-01-02T12:00:00Z', '--json'], env()),
    runOutbox(['audit', 'history', 'user/u1', '--at', '2025-01-02T12:00:00Z'], env()),
    runOutbox(['audit', 'history', 'user/u1', '--format', 'json'], env()),
  ]);
  expect({ code: json.code, stderr: json.stderr }).toEqual({ code: 0, stderr: '' });
  const h = JSON.parse(json.stdout) as History;
  expect(h.at).toBe('2025-01-02T12:00:00.000Z');
  expect(h.events.map((e) => e.aggregate_version)).toEqual([1, 2]);
  expect(h.asOf).toMatchObject({ at: '2025-01-02T12:00:00.000Z', version: 2 });
  expect(h.asOf!.state).toEqual(h.events[1]!.state_after);
  // Who set the email that was there at noon: the 3 AM change, by support-7.
  expect(h.asOf!.fields.email).toEqual({
    value: 'mallory@example.com',
    version: 2,
    eventType: 'UserEmailChanged',
    occurredAt: '2025-01-02T03:00:00.000Z',
    actorId: 'user:support-7',
    eventId: ids.night!.event_id,
  });
  expect(h.asOf!.fields.displayName).toMatchObject({ value: 'Ann Lee', version: 1, eventType: 'UserRegistered', actorId: 'service:signup', eventId: ids.registered!.event_id });
  // Every top-level field of the state has its source.
  expect(Object.keys(h.asOf!.fields)).toEqual(Object.keys(h.asOf!.state as object));
  expect(h.asOf!.removed).toEqual({});
  expect(h.asOf!.outOfOrder).toEqual([]);

  expect({ code: table.code, stderr: table.stderr }).toEqual({ code: 0, stderr: '' });
  expect(table.stdout).toContain('State as of 2025-01-02T12:00:00.000Z (version 2), each field with the event that last changed it:');
  expect(table.stdout).toMatch(/^FIELD +VALUE +VERSION +EVENT +OCCURRED_AT +ACTOR$/m);
  expect(table.stdout).toMatch(/^email +"mallory@example\.com" +2 +UserEmailChanged +2025-01-02T03:00:00\.000Z +user:support-7$/m);
  expect(table.stdout).toMatch(/^displayName +"Ann Lee" +1 +UserRegistered +2025-01-01T10:00:00\.000Z +service:signup$/m);
  // The section follows the event list.
  expect(table.stdout.indexOf('State as of')).toBeGreaterThan(table.stdout.indexOf('v2  2025-01-02T03:00:00.000Z'));

  // Without --at: the current state, at null; the existing fields are unchanged.
  const n = JSON.parse(now.stdout) as History;
  expect(n.at).toBeNull();
  expect(n.asOf).toMatchObject({ at: null, version: 3 });
  expect(n.asOf!.fields.displayName).toMatchObject({ value: 'Ann Smith', version: 3, actorId: 'user:u1' });
  expect(n.asOf!.fields.email).toMatchObject({ version: 2 });
});

test('--diff: per event only the fields it changed, before → after; json has `changes` with or without it', async () => {
  const [table, json, plain, csv] = await Promise.all([
    runOutbox(['audit', 'history', 'user/u1', '--diff'], env()),
    runOutbox(['audit', 'history', 'user/u1', '--diff', '--json'], env()),
    runOutbox(['audit', 'history', 'user/u1', '--json'], env()),
    runOutbox(['audit', 'history', 'user/u1', '--diff', '--format', 'csv'], env()),
  ]);
  expect({ code: table.code, stderr: table.stderr }).toEqual({ code: 0, stderr: '' });
  const v2 = table.stdout.slice(table.stdout.indexOf('\nv2 '), table.stdout.indexOf('\nv3 '));
  expect(v2).toMatch(/ {2}changes {6}email: "ann@example\.com" → "mallory@example\.com"\n/);
  expect(v2).toMatch(/^ {15}version: 1 → 2$/m);
  expect(v2).not.toContain('displayName'); // unchanged fields are not shown
  expect(table.stdout).not.toMatch(/^ {2}(before|after) /m);
  // The first event adds every field.
  expect(table.stdout).toMatch(/ {2}changes {6}userId: \(none\) → "u1"\n/);
  expect(table.stdout).toMatch(/^ {15}displayName: \(none\) → "Ann Lee"$/m);

  const h = JSON.parse(json.stdout) as History;
  expect(h.events[1]!.changes).toEqual(
    expect.arrayContaining([
      { field: 'email', kind: 'changed', before: 'ann@example.com', after: 'mallory@example.com' },
      { field: 'version', kind: 'changed', before: 1, after: 2 },
    ]),
  );
  expect(h.events[1]!.changes!.map((c) => c.field)).not.toContain('displayName');
  expect(h.events[0]!.changes!.every((c) => c.kind === 'added' && !('before' in c))).toBe(true);
  expect(JSON.parse(plain.stdout)).toEqual(h);

  expect(csv.code).toBe(0);
  const lines = csv.stdout.trim().split('\r\n');
  expect(lines[0]).toBe('VERSION,OCCURRED_AT,EVENT,ACTOR,TRACE_ID,CORRELATION_ID,CAUSATION_ID,EVENT_ID,PAYLOAD,CHANGES');
  expect(lines).toHaveLength(4);
  expect(lines[2]).toContain('{""field"":""email"",""kind"":""changed"",""before"":""ann@example.com"",""after"":""mallory@example.com""}');
});

test('a field an event removed is not in the state: listed with the event that removed it', async () => {
  const [json, table, before] = await Promise.all([
    runOutbox(['audit', 'history', 'ticket/t1', '--json'], env(), 30_000, ticketsDir),
    runOutbox(['audit', 'history', 'ticket/t1', '--diff'], env(), 30_000, ticketsDir),
    runOutbox(['audit', 'history', 'ticket/t1', '--at', '2025-01-01T11:30:00Z', '--json'], env(), 30_000, ticketsDir),
  ]);
  expect({ code: json.code, stderr: json.stderr }).toEqual({ code: 0, stderr: '' });
  const h = JSON.parse(json.stdout) as History;
  expect(h.asOf!.state).toEqual({ title: 'printer', open: true });
  expect(Object.keys(h.asOf!.fields)).toEqual(['title', 'open']);
  expect(h.asOf!.removed).toEqual({
    assignee: { lastValue: 'bob', version: 3, eventType: 'TicketUnassigned', occurredAt: '2025-01-01T12:00:00.000Z', actorId: 'user:bob', eventId: ids.unassigned!.event_id },
  });
  expect(h.events[2]!.changes).toEqual([{ field: 'assignee', kind: 'removed', before: 'bob' }]);
  expect(table.stdout).toMatch(/ {2}changes {6}assignee: "bob" → \(none\)\n/);
  expect(table.stdout).toContain('Removed fields (not in the state), each with the event that removed it:');
  expect(table.stdout).toMatch(/^assignee +"bob" +3 +TicketUnassigned +2025-01-01T12:00:00\.000Z +user:bob$/m);
  // Before the removal, the field is in the state, set by the assignment.
  const b = JSON.parse(before.stdout) as History;
  expect(b.asOf!.fields.assignee).toMatchObject({ value: 'bob', version: 2, actorId: 'user:lead', eventId: ids.assigned!.event_id });
  expect(b.asOf!.removed).toEqual({});
});

test('no reducer, a reducer that throws, or no domain: one line says so, the events are shown, exit 0', async () => {
  const [table, json, csv, throws, throwsJson, noDomain] = await Promise.all([
    runOutbox(['audit', 'history', 'invoice/i1', '--diff'], env()),
    runOutbox(['audit', 'history', 'invoice/i1', '--at', '2025-02-01T00:00:00Z', '--json'], env()),
    runOutbox(['audit', 'history', 'invoice/i1', '--format', 'csv'], env()),
    runOutbox(['audit', 'history', 'ticket/t2'], env(), 30_000, ticketsDir),
    runOutbox(['audit', 'history', 'ticket/t2', '--json'], env(), 30_000, ticketsDir),
    runOutbox(['audit', 'history', 'user/u1', '--at', '2025-01-02T12:00:00Z'], env(), 30_000, emptyDir),
  ]);
  for (const r of [table, json, csv, throws, throwsJson, noDomain]) expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  const noState = table.stdout.split('\n').filter((l) => l.startsWith('no state'));
  expect(noState).toEqual(['no state: no reducer for aggregate type "invoice" (reducers: user); events shown without state']);
  expect(table.stdout).toContain('payload      {"amount_cents":100}');
  expect(table.stdout).not.toMatch(/changes|State as of|Current state/);
  const h = JSON.parse(json.stdout) as History;
  expect(h.asOf).toBeNull();
  expect(h.stateUnavailable).toBe('no reducer for aggregate type "invoice" (reducers: user)');
  expect(h.events).toHaveLength(1);
  expect(h.events[0]).not.toHaveProperty('changes');
  expect(h.events[0]).not.toHaveProperty('state_after');
  expect(csv.stdout.trim().split('\r\n')).toHaveLength(2);

  expect(throws.stdout.split('\n').filter((l) => l.startsWith('no state'))).toEqual([
    'no state: the reducer of "ticket" failed at version 2: cannot fold Boom; events shown without state',
  ]);
  expect(throws.stdout).toMatch(/^v2 +\S+ +Boom/m);
  expect(JSON.parse(throwsJson.stdout)).toMatchObject({ asOf: null, stateUnavailable: 'the reducer of "ticket" failed at version 2: cannot fold Boom' });

  expect(noDomain.stdout).toMatch(/^no state: no domain loaded \(no event schemas: .*\); events shown without state$/m);
  expect(noDomain.stdout).toMatch(/^user\/u1: 2 event\(s\) as of 2025-01-02T12:00:00\.000Z$/m);
});

test('--at where occurred_at is not monotonic in the version: the state is that of the versions up to the first that occurred later', async () => {
  const [json, table, none] = await Promise.all([
    runOutbox(['audit', 'history', 'user/u2', '--at', '2025-01-04T00:00:00Z', '--json'], env()),
    runOutbox(['audit', 'history', 'user/u2', '--at', '2025-01-04T00:00:00Z', '--diff'], env()),
    runOutbox(['audit', 'history', 'user/u3', '--at', '2025-01-02T00:00:00Z'], env()),
  ]);
  expect({ code: json.code, stderr: json.stderr }).toEqual({ code: 0, stderr: '' });
  const h = JSON.parse(json.stdout) as History;
  // Version 3 occurred before --at and is shown, with its real states (after version 2's email change)...
  expect(h.events.map((e) => e.aggregate_version)).toEqual([1, 3]);
  expect(h.events[1]!.changes).toEqual(expect.arrayContaining([{ field: 'displayName', kind: 'changed', before: 'Cy Young', after: 'Cy Old' }]));
  expect(h.events[1]!.state_after).toMatchObject({ email: 'cy@late.example', displayName: 'Cy Old', version: 3 });
  // ...but the state as of then is version 1's: version 3 follows version 2, which had not occurred yet.
  expect(h.asOf).toMatchObject({ version: 1, outOfOrder: [3], state: { email: 'cy@example.com', displayName: 'Cy Young' } });
  expect(table.stdout).toContain(
    'note: version(s) 3 occurred at or before 2025-01-04T00:00:00.000Z but follow version 2, which occurred after it (2025-01-05T10:00:00.000Z): not in the state below',
  );
  expect(table.stdout).toContain('State as of 2025-01-04T00:00:00.000Z (version 1), each field with the event that last changed it:');
  expect(table.stdout).toMatch(/^email +"cy@example\.com" +1 +UserRegistered/m);
  expect({ code: none.code, stderr: none.stderr }).toEqual({ code: 0, stderr: '' });
  expect(none.stdout).toContain('State as of 2025-01-02T00:00:00.000Z: none (version 1, the first, occurred after it)');
});
