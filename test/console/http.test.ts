import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, type OutboxConfig } from '../../core/config';
import { createLogger } from '../../core/logger';
import { startConsole, type RunningConsole } from '../../console';
import { childEnv, emptyEnvFile, runOutbox } from '../cli/run-outbox';
import { useTestDatabase } from '../support/isolation';

// The console's HTTP surface against a real PostgreSQL (and the registry for the overview), without a
// browser: security headers, what an action needs (token, same origin, JSON), the log line naming who
// acted, the read-only mode, the loopback host check, and a broken chain shown per event.
const db = useTestDatabase({ poolSize: 2 });
const TOKEN = 'console-test-token-0123456789';
const logLines: Array<Record<string, unknown>> = [];
const logger = createLogger({
  level: 'info',
  destination: { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) },
});

let withTokens: RunningConsole;
let readOnly: RunningConsole;
const ids: Record<string, { id: string; event_id: string }> = {};

function config(extra: Record<string, string> = {}): OutboxConfig {
  return loadConfig({ ...process.env, DATABASE_URL: db.url, OUTBOX_ENV_FILE: '/dev/null', ...extra }, { database: true });
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: () => Record<string, unknown>;
}

/** A request with full control of the headers (Host, Origin, Sec-Fetch-Site), as a browser or an attacker would send them. */
function request(c: RunningConsole, method: string, pathname: string, options: { headers?: Record<string, string>; body?: unknown } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    const req = http.request(
      { host: '127.0.0.1', port: c.port, method, path: pathname, headers: { ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...options.headers } },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, unknown> }));
      },
    );
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const auth = { Authorization: `Bearer ${TOKEN}` };

async function insert(aggregateId: string, payload: Record<string, unknown>, actor: string): Promise<{ id: string; event_id: string }> {
  const { rows } = await db.pool.query<{ id: string; event_id: string }>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
     VALUES ('user', $1, 'UserEmailChanged', 1, $2, $3, 'trace-1', 'corr-1') RETURNING id::text, event_id::text`,
    [aggregateId, JSON.stringify(payload), actor],
  );
  return rows[0]!;
}

async function park(key: string): Promise<void> {
  await db.pool.query(`UPDATE outbox_delivery SET parked_at = now(), park_reason = 'email: expected string, got null' WHERE id = $1`, [ids[key]!.id]);
}

async function delivery(key: string): Promise<{ parked: boolean; delivered: boolean; park_reason: string | null }> {
  const { rows } = await db.pool.query(`SELECT parked_at IS NOT NULL AS parked, delivered_at IS NOT NULL AS delivered, park_reason FROM outbox_delivery WHERE id = $1`, [
    ids[key]!.id,
  ]);
  return rows[0] as { parked: boolean; delivered: boolean; park_reason: string | null };
}

beforeAll(async () => {
  ids.v1 = await insert('u1', { email: 'a@example.com' }, 'user:ann');
  ids.v2 = await insert('u1', { email: 'b@example.com' }, 'user:support-7');
  ids.v3 = await insert('u1', { email: 'c@example.com' }, 'user:ann');
  ids.poison = await insert('u2', { email: null }, 'service:import');
  withTokens = await startConsole({ config: config({ OUTBOX_CONSOLE_TOKEN: `alice:${TOKEN}` }), logger, port: 0 });
  readOnly = await startConsole({ config: config(), logger, port: 0 });
});

afterAll(async () => {
  await withTokens?.close();
  await readOnly?.close();
});

test("every response carries a strict CSP; pages load only this origin's script and style, with no inline script", async () => {
  const pages = ['/', '/parked', '/projections', '/audit?type=user&id=u1', '/audit?type=user', '/no-such-page'];
  for (const p of pages) {
    const r = await request(withTokens, 'GET', p);
    expect(r.status).toBe(p === '/no-such-page' ? 404 : 200);
    const csp = String(r.headers['content-security-policy']);
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).toContain("frame-ancestors 'none'");
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    const scripts = [...r.text.matchAll(/<script\b[^>]*>/g)].map((m) => m[0]);
    expect(scripts).toEqual(['<script src="/assets/console.js" defer>']);
    expect(r.text).not.toMatch(/<script\b[^>]*>[^<]+<\/script>/); // nothing inline
    expect(r.text).not.toMatch(/\son[a-z]+\s*=/i); // no inline event handlers
    for (const m of r.text.matchAll(/\b(?:src|href|action)="([^"]*)"/g)) expect(m[1]).toMatch(/^\/(?!\/)/); // same origin only
  }
  const js = await request(withTokens, 'GET', '/assets/console.js');
  expect(js.status).toBe(200);
  expect(js.headers['content-type']).toMatch(/^text\/javascript/);
  expect(js.text).toBe(readFileSync(path.join(__dirname, '../../console/assets/console.js'), 'utf8'));
  expect(js.text).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|https?:\/\//);
  const css = await request(withTokens, 'GET', '/assets/console.css');
  expect(css.text).not.toMatch(/url\(|@import|https?:\/\//);
});

test('an action needs a valid token, the same origin and a JSON body; each refusal and each action is logged with who', async () => {
  await park('poison');
  await new Promise((r) => setTimeout(r, 1100)); // past the overview's one-second cache
  expect((await request(withTokens, 'GET', '/api/overview')).json().outbox).toMatchObject({ parkedEvents: 1 });
  const body = { eventId: ids.poison!.event_id };
  const refused: Array<{ headers: Record<string, string>; status: number; error: RegExp }> = [
    { headers: {}, status: 401, error: /token is required/ },
    { headers: { Authorization: 'Bearer wrong-token-wrong-token' }, status: 401, error: /not valid/ },
    { headers: { ...auth, Origin: 'http://evil.example' }, status: 403, error: /cross-origin/ },
    { headers: { ...auth, 'Sec-Fetch-Site': 'cross-site' }, status: 403, error: /cross-origin/ },
    { headers: { ...auth, 'Content-Type': 'text/plain' }, status: 415, error: /JSON/ },
    { headers: { ...auth, 'X-Outbox-User': '<script>' }, status: 400, error: /X-Outbox-User/ },
  ];
  for (const r of refused) {
    const res = await request(withTokens, 'POST', '/api/parked/skip', { headers: r.headers, body });
    expect({ status: res.status, error: res.json().error }).toEqual({ status: r.status, error: expect.stringMatching(r.error) });
  }
  expect(await delivery('poison')).toEqual({ parked: true, delivered: false, park_reason: 'email: expected string, got null' });
  expect(logLines.filter((l) => /action refused/.test(String(l.msg)))).toHaveLength(refused.length);

  // Same origin (as the page's script sends it): retry, then skip.
  const retry = await request(withTokens, 'POST', '/api/parked/retry', {
    headers: { ...auth, Origin: `http://127.0.0.1:${withTokens.port}`, 'Sec-Fetch-Site': 'same-origin', 'X-Outbox-User': 'Grace Hopper' },
    body,
  });
  expect(retry.status).toBe(200);
  expect(retry.json()).toMatchObject({ action: 'retry', by: 'Grace Hopper (token alice)', event_id: ids.poison!.event_id });
  expect(await delivery('poison')).toEqual({ parked: false, delivered: false, park_reason: null });
  // The overview polled right after an action shows its effect, not the cached figures from before it.
  expect((await request(withTokens, 'GET', '/api/overview')).json().outbox).toMatchObject({ parkedEvents: 0 });
  expect(logLines).toContainEqual(expect.objectContaining({ action: 'retry', eventId: ids.poison!.event_id, by: 'alice', user: 'Grace Hopper', level: 30 }));

  const again = await request(withTokens, 'POST', '/api/parked/retry', { headers: auth, body });
  expect(again.status).toBe(409);
  expect(again.json().error).toBe(`event ${ids.poison!.event_id} is not a parked event: it is not parked`);

  await park('poison');
  const skip = await request(withTokens, 'POST', '/api/parked/skip', { headers: { ...auth, 'X-Outbox-User': 'Grace Hopper' }, body: { ...body, reason: 'ticket OPS-1' } });
  expect(skip.status).toBe(200);
  expect(await delivery('poison')).toEqual({
    parked: true,
    delivered: true,
    park_reason: 'skipped: email: expected string, got null (ticket OPS-1; by Grace Hopper (token alice) in the console)',
  });
  expect(logLines).toContainEqual(expect.objectContaining({ action: 'skip', eventId: ids.poison!.event_id, by: 'alice', user: 'Grace Hopper', level: 40 }));

  const unknown = await request(withTokens, 'POST', '/api/projections/rebuild', { headers: auth, body: { projection: 'nope' } });
  expect(unknown.status).toBe(404);
  const badId = await request(withTokens, 'POST', '/api/parked/retry', { headers: auth, body: { eventId: "1' OR 1=1" } });
  expect(badId.status).toBe(400);
});

test('without OUTBOX_CONSOLE_TOKEN the console is read-only', async () => {
  await park('v3');
  const page = await request(readOnly, 'GET', '/parked');
  expect(page.text).toContain('data-actions="off"');
  expect(page.text).toMatch(/<button type="button" class="retry" data-action="retry" data-event-id="[^"]+" disabled/);
  const res = await request(readOnly, 'POST', '/api/parked/retry', { headers: auth, body: { eventId: ids.v3!.event_id } });
  expect(res.status).toBe(403);
  expect(res.json().error).toMatch(/OUTBOX_CONSOLE_TOKEN is not set/);
  expect((await delivery('v3')).parked).toBe(true);
});

test('bound to loopback, it answers only to loopback host names (no DNS rebinding)', async () => {
  const evil = await request(withTokens, 'GET', '/api/overview', { headers: { Host: `attacker.example:${withTokens.port}` } });
  expect(evil.status).toBe(421);
  for (const host of [`localhost:${withTokens.port}`, `127.0.0.1:${withTokens.port}`]) {
    expect((await request(withTokens, 'GET', '/healthz', { headers: { Host: host } })).status).toBe(200);
  }
});

test('the overview JSON has the outbox figures, the registry subjects and no relay leader when none runs', async () => {
  // The overview is computed at most once a second; the tests above parked an event behind the console's back.
  await new Promise((r) => setTimeout(r, 1100));
  const o = (await request(withTokens, 'GET', '/api/overview')).json() as Record<string, Record<string, unknown>>;
  expect(o.outbox).toMatchObject({ ok: true, backlog: 3, parkedAggregates: 1, parkedEvents: 1 });
  expect(o.relay).toEqual({ ok: true, leader: null, otherConnections: 0 });
  expect(o.publishRate).toMatchObject({ ok: true, lastMinute: 0 });
  expect(o.projections).toEqual({ ok: true, items: [] });
  expect(o.registry).toMatchObject({ ok: true, subjects: expect.any(Array) });
});

test('the audit page marks the chain per event: ok before a tampered event, broken at it, not verified after it', async () => {
  const before = (await request(withTokens, 'GET', '/api/audit?type=user&id=u1')).json() as { events: Array<{ chain: { status: string } }>; actors: string[] };
  expect(before.events.map((e) => e.chain.status)).toEqual(['ok', 'ok', 'ok']);
  expect(before.actors).toEqual(['user:ann', 'user:support-7']);
  // The table's owner rewrites version 2 behind the triggers' back.
  await db.pool.query('ALTER TABLE outbox DISABLE TRIGGER outbox_no_update');
  await db.pool.query(`UPDATE outbox SET payload = '{"email":"mallory@example.com"}' WHERE id = $1`, [ids.v2!.id]);
  await db.pool.query('ALTER TABLE outbox ENABLE TRIGGER outbox_no_update');
  const after = (await request(withTokens, 'GET', '/api/audit?type=user&id=u1')).json() as {
    events: Array<{ chain: { status: string; reason?: string } }>;
    chain: { ok: boolean };
  };
  expect(after.chain.ok).toBe(false);
  expect(after.events.map((e) => e.chain.status)).toEqual(['ok', 'broken', 'unverified']);
  expect(after.events[1]!.chain.reason).toMatch(/hash/);
  const page = await request(withTokens, 'GET', '/audit?type=user&id=u1');
  expect(page.text).toContain('id="chain-summary">chain broken');
  expect(page.text).toContain('mallory@example.com');
});

test('the audit history is in version order past version 9, and each field is diffed against the events before it', async () => {
  for (let i = 1; i <= 11; i++) await insert('u11', { email: `v${i}@example.com` }, 'user:ann');
  const r = (await request(withTokens, 'GET', '/api/audit?type=user&id=u11')).json() as {
    events: Array<{ aggregate_version: number; changes: Array<{ before?: unknown; after: unknown }> }>;
  };
  expect(r.events.map((e) => e.aggregate_version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  expect(r.events[9]!.changes).toEqual([{ field: 'email', before: 'v9@example.com', after: 'v10@example.com', changed: true }]);
});

test('outbox console: bad flags exit 2 naming the flag; a port in use exits 1 naming it', async () => {
  const env = childEnv({ OUTBOX_ENV_FILE: emptyEnvFile(), DATABASE_URL: db.url });
  const [badPort, badHost, taken] = await Promise.all([
    runOutbox(['console', '--port', 'x'], env),
    runOutbox(['console', '--host', 'a b'], env),
    runOutbox(['console', '--port', String(withTokens.port)], env),
  ]);
  expect({ code: badPort.code, lines: badPort.lines }).toEqual({ code: 2, lines: ['outbox: --port must be a port number 0..65535, got "x" (see "outbox console --help")'] });
  expect({ code: badHost.code, lines: badHost.lines }).toEqual({ code: 2, lines: ['outbox: --host must be a host name or IP address, got "a b" (see "outbox console --help")'] });
  expect(taken.code).toBe(1);
  expect(taken.lines).toEqual([`outbox: the console port 127.0.0.1:${withTokens.port} cannot be opened: EADDRINUSE`]);
});

test('with OUTBOX_CONSOLE_CHECKPOINTS each audited event links to its proof, built by `outbox audit prove` (its error shown when it cannot)', async () => {
  const withProofs = await startConsole({ config: config({ OUTBOX_CONSOLE_CHECKPOINTS: '/nonexistent/checkpoints.jsonl' }), logger, port: 0 });
  try {
    const page = await request(withProofs, 'GET', '/audit?type=user&id=u1');
    expect(page.text).toContain('href="/audit/proof?type=user&amp;id=u1&amp;version=1"');
    expect((await request(withTokens, 'GET', '/audit?type=user&id=u1')).text).not.toContain('/audit/proof');
    const proof = await request(withProofs, 'GET', '/audit/proof?type=user&id=u1&version=1');
    expect(proof.status).toBe(502);
    expect(proof.text).toContain('No proof for user/u1 version 1');
    expect(proof.text).toMatch(/<p class="error">outbox: [^<]+<\/p>/);
    expect((await request(withProofs, 'GET', '/audit/proof?type=user&id=u1&version=x')).status).toBe(400);
  } finally {
    await withProofs.close();
  }
});
