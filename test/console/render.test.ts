import { loadConfig } from '../../core/config';
import { redact } from '../../core/redact';
import { chainMarks, payloadChanges } from '../../console/data';
import { escapeHtml, html, raw } from '../../console/html';
import { auditPage, formatAge, parkedPage } from '../../console/pages';
import { matchToken } from '../../console/server';

// The console's pure parts: escaping, the generic per-field diff, per-event chain marks, token matching.

const XSS = ['<script>window.__xss=1</script>', '"><img src=x onerror="window.__xss=1">', "'><svg/onload=alert(1)>", '`${1}`'];

test('html escapes every interpolated value, also inside attributes, and keeps its own markup', () => {
  for (const x of XSS) {
    const out = html`<p title="${x}">${x}</p>`.value;
    expect(out).not.toMatch(/<script|<img|<svg/);
    expect(out).not.toMatch(/title=""|title="'/);
    expect(out.startsWith('<p title="')).toBe(true);
  }
  expect(escapeHtml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  expect(html`<ul>${['a<', 'b'].map((s) => html`<li>${s}</li>`)}</ul>`.value).toBe('<ul><li>a&lt;</li><li>b</li></ul>');
  expect(html`${raw('<br>')}${null}${undefined}${false}${0}`.value).toBe('<br>0');
});

test('payload changes: each field against the merge of the earlier payloads', () => {
  const changes = payloadChanges([{ payload: { email: 'a@x', name: 'Ann' } }, { payload: { email: 'b@x' } }, { payload: { email: 'b@x', tags: ['t'] } }]);
  expect(changes[0]).toEqual([
    { field: 'email', after: 'a@x', changed: true },
    { field: 'name', after: 'Ann', changed: true },
  ]);
  expect(changes[1]).toEqual([{ field: 'email', before: 'a@x', after: 'b@x', changed: true }]);
  expect(changes[2]).toEqual([
    { field: 'email', before: 'b@x', after: 'b@x', changed: false },
    { field: 'tags', after: ['t'], changed: true },
  ]);
});

test('chain marks: ok before the first broken link, broken at it, unverified after it', () => {
  const events = [1, 2, 3].map((aggregate_version) => ({ aggregate_version }));
  expect(chainMarks(events, { ok: true, checked: 3, eventsPerSecond: 1 }).map((m) => m.status)).toEqual(['ok', 'ok', 'ok']);
  const broken = chainMarks(events, {
    ok: false,
    checked: 2,
    eventsPerSecond: 1,
    firstBroken: { aggregateType: 'user', aggregateId: '1', version: 2, eventId: 'e', reason: 'hash mismatch' },
  });
  expect(broken).toEqual([{ status: 'ok' }, { status: 'broken', reason: 'hash mismatch' }, { status: 'unverified', reason: 'after the broken link at version 2' }]);
});

test('tokens match in full only, and name their holder', () => {
  const tokens = [
    { name: 'alice', token: 'a'.repeat(20) },
    { name: 'bob', token: 'b'.repeat(20) },
  ];
  expect(matchToken(tokens, 'b'.repeat(20))?.name).toBe('bob');
  expect(matchToken(tokens, 'b'.repeat(19))).toBeUndefined();
  expect(matchToken(tokens, '')).toBeUndefined();
  expect(matchToken([], 'a'.repeat(20))).toBeUndefined();
});

test('pages render data as text: a hostile payload, actor, id and park reason stay escaped', () => {
  const x = XSS[1]!;
  const audit = auditPage({
    type: 'user',
    id: x,
    types: ['user', x],
    proofs: true,
    result: {
      aggregateType: 'user',
      aggregateId: x,
      actors: [x],
      chain: { ok: true, checked: 1, eventsPerSecond: 1 },
      events: [
        {
          event_id: '00000000-0000-4000-8000-000000000000',
          aggregate_type: 'user',
          aggregate_id: x,
          aggregate_version: 1,
          event_type: x,
          schema_version: 1,
          occurred_at: new Date(0),
          recorded_at: new Date(0),
          actor_id: x,
          trace_id: x,
          correlation_id: x,
          causation_id: x,
          payload: { [x]: x },
          hash: 'ab'.repeat(32),
          prev_hash: '00'.repeat(32),
          changes: [{ field: x, after: x, changed: true }],
          chain: { status: 'ok' },
        },
      ],
    },
  }).value;
  const parked = parkedPage(
    [
      {
        event_id: '00000000-0000-4000-8000-000000000000',
        event_type: x,
        aggregate_type: 'user',
        aggregate_id: x,
        aggregate_version: '1',
        attempts: 1,
        parked_at: new Date(0),
        park_reason: XSS[0]!,
        held_back: '1',
        held: [{ aggregate_version: '2', event_id: x, event_type: x, enqueued_at: new Date(0) }],
      },
    ],
    true,
  ).value;
  for (const page of [audit, parked]) {
    expect(page).not.toMatch(/<script|<img|<svg|onerror="/);
    expect(page).toContain('&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;');
  }
  expect(audit).toContain('chain ok');
  expect(audit).toContain('/audit/proof?type=user&amp;id=%22%3E%3Cimg');
});

test('ages read like outbox status prints them (seconds truncated: never 1m60s)', () => {
  expect(formatAge(12.34)).toBe('12.3s');
  expect(formatAge(125)).toBe('2m05s');
  expect(formatAge(119.6)).toBe('1m59s');
  expect(formatAge(3 * 3600 + 60 * 12)).toBe('3h12m');
  expect(formatAge(2 * 86400 + 4 * 3600)).toBe('2d04h');
});

test('OUTBOX_CONSOLE_* settings: defaults, named tokens (redacted everywhere), and errors naming the variable', () => {
  const base = { OUTBOX_ENV_FILE: '/dev/null' };
  expect(loadConfig(base).console).toEqual({ port: 9470, host: '127.0.0.1', tokens: [] });
  const c = loadConfig({
    ...base,
    OUTBOX_CONSOLE_PORT: '0',
    OUTBOX_CONSOLE_HOST: '::1',
    OUTBOX_CONSOLE_TOKEN: 'alice:alice-secret-0123456789, bob:bob-secret-0123456789',
    OUTBOX_CONSOLE_CHECKPOINTS: 'outbox.outbox.checkpoints',
  });
  expect(c.console).toEqual({
    port: 0,
    host: '::1',
    tokens: [
      { name: 'alice', token: 'alice-secret-0123456789' },
      { name: 'bob', token: 'bob-secret-0123456789' },
    ],
    checkpoints: 'outbox.outbox.checkpoints',
  });
  expect(redact('header Bearer bob-secret-0123456789')).toBe('header Bearer ***');
  expect(loadConfig({ ...base, OUTBOX_CONSOLE_TOKEN: 'just-one-token-0123456789' }).console?.tokens).toEqual([{ name: 'operator', token: 'just-one-token-0123456789' }]);
  expect(() => loadConfig({ ...base, OUTBOX_CONSOLE_TOKEN: 'alice:short' })).toThrow(
    'OUTBOX_CONSOLE_TOKEN has a token for "alice" that is shorter than 16 characters or contains spaces',
  );
  expect(() => loadConfig({ ...base, OUTBOX_CONSOLE_TOKEN: 'a b:0123456789abcdef01' })).toThrow(/^OUTBOX_CONSOLE_TOKEN has an entry with an invalid name/);
  expect(() => loadConfig({ ...base, OUTBOX_CONSOLE_TOKEN: 'x:0123456789abcdef01,x:0123456789abcdef02' })).toThrow('OUTBOX_CONSOLE_TOKEN names "x" twice');
  expect(() => loadConfig({ ...base, OUTBOX_CONSOLE_PORT: '70000' })).toThrow(/^OUTBOX_CONSOLE_PORT must be between 0 and 65535/);
  expect(() => loadConfig({ ...base, OUTBOX_CONSOLE_HOST: 'a b' })).toThrow(/^OUTBOX_CONSOLE_HOST must be a host name/);
});
