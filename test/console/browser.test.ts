import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { runOutbox } from '../cli/run-outbox';
import { readTopics } from '../support/kafka';
import { uniqueName, useTestDatabase } from '../support/isolation';
import { killHard, spawnTs, type Child } from '../support/processes';
import { relayEnv } from '../support/relay-env';
import { ensureChromium, launchChromium, type Browser } from './browser';

// `outbox console` in real Chromium against the real stack: a relay and a projector in their own
// processes, the console as `outbox console`, and the pages driven as an operator would.
// OUTBOX_CONSOLE_SCREENSHOTS=<dir> also saves a screenshot of each page there.
// Page-side code (run in Chromium by page.evaluate and waitForFunction): the tests' TypeScript has no DOM types.
declare const document: {
  body: { getAttribute(name: string): string | null };
  getElementById(id: string): { textContent: string | null } | null;
  querySelector(selector: string): { textContent: string | null; classList: { contains(name: string): boolean } } | null;
};
declare const window: Record<string, unknown>;

const chromium = ensureChromium();
if ('skip' in chromium) process.stderr.write(`test/console/browser.test.ts: ${chromium.skip}\n`);
const describeInBrowser = 'path' in chromium ? describe : describe.skip;
jest.setTimeout(300_000);

const db = useTestDatabase();
const TOKEN = 'browser-test-token-0123456789';
const SCRIPT = '<script>window.__xss=1</script>';
const IMG = '"><img src=x onerror="window.__xss=2">';
const XSS_ID = `x"><img src=x onerror=window.__xss=3>`;
const EVIL_TYPE = '<img src=x onerror=window.__xss=4>';
const logger = createLogger({ level: 'warn' });

let topic: string;
let baseEnv: NodeJS.ProcessEnv;
let consoleEnv: NodeJS.ProcessEnv;
let relay: Child | undefined;
let projector: Child | undefined;
let consoleProc: Child | undefined;
let url: string;
let browser: Browser | undefined;
let page: Page;
const ev: Record<string, string> = {};

async function insert(key: string, aggregateId: string, eventType: string, payload: Record<string, unknown>, actor: string, correlation = `req-${key}`): Promise<void> {
  const { rows } = await db.pool.query<{ event_id: string }>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
     VALUES ('user', $1, $2, 1, $3, $4, $5, $6) RETURNING event_id::text`,
    [aggregateId, eventType, JSON.stringify(payload), actor, `trace-${key}`, correlation],
  );
  ev[key] = rows[0]!.event_id;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function counts(): Promise<{ delivered: number; parked: number; projected: number }> {
  const { rows } = await db.pool.query<{ delivered: number; parked: number; projected: number }>(
    `SELECT (SELECT count(*) FROM outbox_delivery WHERE delivered_at IS NOT NULL)::int AS delivered,
            (SELECT count(*) FROM outbox_delivery WHERE parked_at IS NOT NULL AND delivered_at IS NULL)::int AS parked,
            0 AS projected`,
  );
  // The projector creates the audit_log view when it starts.
  const view = await db.pool.query(`SELECT to_regclass('outbox_read.audit_log') IS NOT NULL AS ok`);
  if (view.rows[0]?.ok) rows[0]!.projected = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox_read.audit_log')).rows[0]!.n;
  return rows[0]!;
}

async function delivery(key: string): Promise<{ parked: boolean; delivered: boolean }> {
  const { rows } = await db.pool.query(
    `SELECT d.parked_at IS NOT NULL AS parked, d.delivered_at IS NOT NULL AS delivered FROM outbox_delivery d JOIN outbox o ON o.id = d.id WHERE o.event_id = $1`,
    [ev[key]],
  );
  return rows[0] as { parked: boolean; delivered: boolean };
}

async function stop(child: Child | undefined): Promise<void> {
  if (!child || child.proc.exitCode !== null || child.proc.signalCode !== null) return;
  child.proc.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const exited = await Promise.race([child.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 30_000)))]);
  clearTimeout(timer);
  if (!exited) await killHard(child);
}

async function screenshot(name: string): Promise<void> {
  const dir = process.env.OUTBOX_CONSOLE_SCREENSHOTS;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
}

async function text(selector: string): Promise<string> {
  return (await page.locator(selector).first().innerText()).trim();
}

describeInBrowser('outbox console in Chromium', () => {
  beforeAll(async () => {
    topic = uniqueName('console');
    baseEnv = relayEnv(db.url, topic, { KAFKA_CLIENT_ID: uniqueName('console') });

    // An aggregate with three actors, hostile strings where services write data, a record too large
    // for the first relay (parked, one event held behind it) and an event type without a schema (parked).
    await insert('ada1', 'ada', 'UserRegistered', { email: 'ada@example.com', name: 'Ada Lovelace' }, 'service:signup');
    await insert('ada2', 'ada', 'UserEmailChanged', { email: 'ada.king@example.co.uk' }, 'user:ada');
    await insert('ada3', 'ada', 'UserRenamed', { name: 'Ada King' }, 'user:support-7');
    await insert('xss1', XSS_ID, 'UserRegistered', { email: SCRIPT, name: IMG }, IMG, SCRIPT);
    await insert('big1', 'big', 'UserRegistered', { email: 'big@example.com', name: 'Big' }, 'service:signup');
    await insert('big2', 'big', 'UserEmailChanged', { email: `${'b'.repeat(1500)}@example.com` }, 'user:big');
    await insert('big3', 'big', 'UserEmailChanged', { email: 'small@example.com' }, 'user:big');
    await insert('evil', 'evil', EVIL_TYPE, { note: SCRIPT }, 'service:import');

    relay = spawnTs('test/support/relay-process.ts', { ...baseEnv, OUTBOX_KAFKA_MAX_MESSAGE_BYTES: '1024' });
    await relay.waitFor(/leader/, 120_000);
    projector = spawnTs('bin/outbox.js', baseEnv, ['project']);
    await waitUntil(
      '5 events published, 2 parked and the published ones projected',
      async () => {
        const c = await counts();
        return c.delivered === 5 && c.parked === 2 && c.projected === 5;
      },
      180_000,
    );
    // The broker's limit was the problem: a relay with the default limit replaces the first one.
    await stop(relay);
    relay = spawnTs('test/support/relay-process.ts', baseEnv);
    await relay.waitFor(/leader/, 120_000);

    consoleEnv = { ...baseEnv, OUTBOX_CONSOLE_TOKEN: `ops:${TOKEN}`, LOG_LEVEL: 'info' };
    consoleProc = spawnTs('bin/outbox.js', consoleEnv, ['console', '--port', '0']);
    await consoleProc.waitFor(/outbox console on http:\/\/\S+/, 120_000);
    url = /outbox console on (http:\/\/\S+)/.exec(consoleProc.output())![1]!;

    browser = await launchChromium((chromium as { path: string }).path);
    page = await browser.context.newPage();
    page.setDefaultTimeout(60_000);
  });

  afterAll(async () => {
    await browser?.close();
    await stop(consoleProc);
    await stop(relay);
    await stop(projector);
  });

  test('the overview refreshes without reloading and shows the figures `outbox status --json` prints', async () => {
    await page.goto(`${url}/`);
    await page.waitForSelector('body[data-refreshed]');
    await page.evaluate(() => (window.__sameDocument = true));
    // A third aggregate parks: the page shows it without being reloaded.
    await insert('late', 'late', 'UserTeleported', { to: 'mars' }, 'user:late');
    await page.waitForFunction(() => document.getElementById('parked-aggregates')?.textContent === '3', undefined, { timeout: 120_000 });
    expect(await page.evaluate(() => window.__sameDocument)).toBe(true);

    const status = await runOutbox(['status', '--json'], consoleEnv, 60_000);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout) as {
      database: { backlog: number; parkedAggregates: number; parkedEvents: number; oldestUndeliveredAt: string };
      projections: { items: Array<{ name: string; lag: number; lastAppliedOffset: string }> };
      registry: { subjects: string[] };
    };
    // The page as of a refresh after `outbox status` ran.
    const before = await page.getAttribute('body', 'data-refreshed');
    await page.waitForFunction((b) => document.body.getAttribute('data-refreshed') !== b, before, { timeout: 60_000 });
    expect(s.database).toMatchObject({ backlog: 4, parkedAggregates: 3, parkedEvents: 3 });
    expect(await text('#backlog')).toBe(String(s.database.backlog));
    expect(await text('#parked-aggregates')).toBe(String(s.database.parkedAggregates));
    expect(await text('#parked-events')).toBe(String(s.database.parkedEvents));
    expect(await text('#oldest-at')).toBe(s.database.oldestUndeliveredAt);
    expect(await text('#oldest-age')).toMatch(/^\d+(\.\d)?s$|^\d+m\d\ds$/);
    expect(s.projections.items.map((p) => p.name).sort()).toEqual(['audit_log', 'users']);
    for (const p of s.projections.items) {
      const row = page.locator(`#projection-summary tr[data-projection="${p.name}"]`);
      expect((await row.locator('.lag').innerText()).trim()).toBe(String(p.lag));
      expect((await row.locator('.offsets').innerText()).trim()).toBe(p.lastAppliedOffset);
    }
    expect(await page.locator('#projection-lag tbody tr').count()).toBeGreaterThan(0);
    // Other checkouts may register subjects meanwhile: everything status listed is on the page, and the count is the list's.
    const subjects = (await page.locator('#subjects li').allTextContents()).map((t) => t.trim());
    expect(subjects).toEqual(expect.arrayContaining(s.registry.subjects));
    expect(await text('#subject-count')).toBe(subjects.length.toLocaleString('en-US'));
    // The relay leader is the second relay's leader connection.
    const leader = /^pid (\d+)$/.exec(await text('#relay-leader'));
    expect(leader).not.toBeNull();
    const { rows } = await db.pool.query('SELECT application_name FROM pg_stat_activity WHERE pid = $1 AND datname = current_database()', [Number(leader![1])]);
    expect(rows).toEqual([{ application_name: 'kafka-outbox-relay-leader' }]);
    await screenshot('overview');
  });

  test('a skip without a token is refused', async () => {
    await page.goto(`${url}/parked`);
    expect(await page.inputValue('#token')).toBe('');
    const row = page.locator(`tr[data-event-id="${ev.evil}"]`);
    await row.locator('details.skip summary').click();
    await row.locator('button[data-action="skip"]').click();
    await page.waitForFunction(() => /refused/.test(document.getElementById('flash')?.textContent ?? ''));
    expect(await text('#flash')).toMatch(/^skip of \S+ refused \(HTTP 401\): a token is required/);
    expect(await delivery('evil')).toEqual({ parked: true, delivered: false });
    await screenshot('parked');
  });

  test('retrying a parked event from the page publishes it, and the event held behind it', async () => {
    await page.goto(`${url}/parked`);
    await page.fill('#token', TOKEN);
    await page.fill('#user', 'Grace Hopper');
    await page.locator(`button[data-action="retry"][data-event-id="${ev.big2}"]`).click();
    await page.waitForFunction(() => /done/.test(document.getElementById('flash')?.textContent ?? ''));
    expect(await text('#flash')).toBe(`retry of ${ev.big2}: done (by Grace Hopper (token ops))`);
    // The list is rendered again: the released event is gone, the other parked ones are still there.
    await page.waitForSelector(`tr[data-event-id="${ev.big2}"]`, { state: 'detached' });
    expect(await page.locator('#parked tbody tr').count()).toBe(2);
    expect(await page.locator(`tr[data-event-id="${ev.evil}"] button[data-action="retry"]`).count()).toBe(1);
    await waitUntil('big v2 and v3 delivered', async () => (await delivery('big2')).delivered && (await delivery('big3')).delivered);

    const config = loadConfig({ ...baseEnv }, { kafka: true });
    const onTopic = await readTopics(createKafka(config.kafka, logger), [topic]);
    const big = onTopic.filter((m) => m.message.headers?.aggregate_id?.toString() === 'big').sort((a, b) => Number(BigInt(a.offset) - BigInt(b.offset)));
    expect(big.map((m) => m.message.headers?.event_id?.toString())).toEqual([ev.big1, ev.big2, ev.big3]);
    // The action is in the console's log with who did it.
    await waitUntil('the retry logged', async () => /"action":"retry".*"by":"ops".*"user":"Grace Hopper"/.test(consoleProc!.output()), 10_000);
  });

  test('hostile payloads, actors, ids and event types stay inert text', async () => {
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    const visits = [
      `/audit?${new URLSearchParams({ type: 'user', id: XSS_ID }).toString()}`,
      `/audit?${new URLSearchParams({ type: 'user', id: 'x' }).toString()}`,
      `/audit?${new URLSearchParams({ type: 'user', id: 'evil' }).toString()}`,
      '/parked',
      '/',
    ];
    for (const v of visits) {
      await page.goto(`${url}${v}`);
      await page.waitForTimeout(500);
      expect(await page.evaluate(() => window.__xss)).toBeUndefined();
      // Escaped, not merely blocked by the CSP: no element came out of the data.
      expect(await page.locator('img').count()).toBe(0);
      expect(await page.locator('script').count()).toBe(1);
    }
    await page.goto(`${url}${visits[0]}`);
    await screenshot('audit-hostile');
    const history = await text('#history');
    for (const s of [SCRIPT, IMG, XSS_ID]) expect(history).toContain(s);
    await page.goto(`${url}/parked`);
    expect(await text(`tr[data-event-id="${ev.evil}"] .event-type`)).toBe(EVIL_TYPE);
    expect(dialogs).toEqual([]);
  });

  test('the audit page of an aggregate shows its actors, what each event changed, and "chain ok"', async () => {
    await page.goto(`${url}/audit`);
    await page.fill('input[name="type"]', 'user');
    await page.fill('input[name="id"]', 'ada');
    await Promise.all([page.waitForURL(/\/audit\?type=user&id=ada$/), page.click('form.search button[type="submit"]')]);
    expect((await page.locator('#actors .actor').allInnerTexts()).map((a) => a.trim())).toEqual(['service:signup', 'user:ada', 'user:support-7']);
    expect(await text('#chain-summary')).toBe('chain ok');
    expect((await page.locator('#events .chain').allInnerTexts()).map((c) => c.trim())).toEqual(['chain ok', 'chain ok', 'chain ok']);
    const v2 = page.locator('#events tr[data-version="2"]');
    expect((await v2.locator('.actor').innerText()).trim()).toBe('user:ada');
    expect((await v2.locator('tr.changed .before').innerText()).trim()).toBe('"ada@example.com"');
    expect((await v2.locator('tr.changed .after').innerText()).trim()).toBe('"ada.king@example.co.uk"');
    await screenshot('audit');
  });

  test('a rebuild started from the page runs with its progress shown, then swaps the new generation in', async () => {
    await page.goto(`${url}/projections`);
    expect(await page.inputValue('#token')).toBe(TOKEN); // kept for this tab
    const users = page.locator('section.projection[data-projection="users"]');
    await users.locator('details.rebuild summary').click();
    await users.locator('button[data-action="rebuild"]').click();
    await page.waitForFunction(() => /rebuild of users/.test(document.getElementById('flash')?.textContent ?? ''));
    expect(await text('#flash')).toBe('rebuild of users: started (by Grace Hopper (token ops))');
    await page.waitForSelector('#jobs li.job', { timeout: 60_000 });
    await screenshot('projections');
    // The page follows the rebuild by itself until the new generation is live.
    await page.waitForFunction(() => document.querySelector('#jobs li.job')?.classList.contains('succeeded') === true, undefined, { timeout: 240_000 });
    await page.waitForFunction(() => /live generation 2/.test(document.querySelector('section.projection[data-projection="users"] h2')?.textContent ?? ''), undefined, {
      timeout: 60_000,
    });
    const { rows } = await db.pool.query(`SELECT live_generation FROM outbox_read.projector_projections WHERE projection = 'users'`);
    expect(rows).toEqual([{ live_generation: 2 }]);
    expect(consoleProc!.output()).toMatch(/"action":"rebuild".*"by":"ops".*"user":"Grace Hopper"/);
  });
});
