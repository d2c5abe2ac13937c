import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { startRelay, type RelayHandle } from '../../relay';
import { defaultSchemasDir, loadCatalog } from '../../schemas/catalog';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { relayConfig, relayEnv } from '../support/relay-env';
import { REPO_ROOT } from '../support/stack';

// A row that cannot be encoded parks only its own aggregate: later events of that aggregate wait
// behind it, every other aggregate keeps flowing. `outbox parked retry` (after the schema is fixed)
// and `outbox parked skip` release it, and the aggregate resumes in order.
const run = promisify(execFile);
const db = useTestDatabase();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const schemasDir = mkdtempSync(path.join(os.tmpdir(), 'outbox-schemas-'));
afterAll(() => rmSync(schemasDir, { recursive: true, force: true }));

async function insert(aggregateId: string, eventType: string, payload: unknown): Promise<string> {
  const { rows } = await db.pool.query<{ event_id: string }>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     VALUES ('user', $1, $2, 1, $3::jsonb, 'user:ops', 'trace-poison') RETURNING event_id::text`,
    [aggregateId, eventType, JSON.stringify(payload)],
  );
  return rows[0]!.event_id;
}

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function outbox(env: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [path.join(REPO_ROOT, 'bin/outbox.js'), ...args], { env, cwd: REPO_ROOT });
  return stdout;
}

test('a poison row parks only its aggregate; retry after the schema is fixed, or skip, resumes it in order', async () => {
  cpSync(defaultSchemasDir(), schemasDir, { recursive: true, filter: (src) => !src.endsWith('.ts') });
  const namespace = uniqueName('poison');
  const topic = uniqueName('poison');
  const config = relayConfig(db.url, topic);
  const env = relayEnv(db.url, topic);
  const kafka = createKafka(config.kafka, logger);
  const parkedLog: string[] = [];
  const start = (): RelayHandle =>
    startRelay({ config, logger, catalog: loadCatalog(schemasDir, { namespace }), observer: { parked: (id, reason) => parkedLog.push(`${id}: ${reason}`) } });
  let relay = start();
  try {
    const a1 = await insert('A', 'UserEmailChanged', { email: 'a1@example.com' });
    const a2 = await insert('A', 'UserNicknameSet', { nickname: 'ace' }); // no schema for this type yet
    const a3 = await insert('A', 'UserEmailChanged', { email: 'a3@example.com' });
    const c1 = await insert('C', 'UserEmailChanged', { email: null }); // does not fit the schema
    const c2 = await insert('C', 'UserEmailChanged', { email: 'c2@example.com' });
    for (let i = 1; i <= 5; i++) await insert('B', 'UserEmailChanged', { email: `b${i}@example.com` });

    await waitUntil('B flowed and A, C parked', async () => {
      const { rows } = await db.pool.query<{ delivered: string; parked: string }>(
        `SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL)::text AS delivered, count(*) FILTER (WHERE parked_at IS NOT NULL)::text AS parked FROM outbox_delivery`,
      );
      return rows[0]!.delivered === '6' && rows[0]!.parked === '2';
    });
    let onTopic = await readTopics(kafka, [topic], { count: 6 });
    const eventIds = (agg: string): string[] => onTopic.filter((m) => m.message.headers?.aggregate_id?.toString() === agg).map((m) => m.message.headers!.event_id!.toString());
    expect(eventIds('B')).toHaveLength(5);
    expect(eventIds('A')).toEqual([a1]);
    expect(eventIds('C')).toEqual([]);
    expect(parkedLog).toHaveLength(2);
    expect(parkedLog.find((l) => l.startsWith(a2))).toMatch(/UserNicknameSet/);
    expect(parkedLog.find((l) => l.startsWith(c1))).toMatch(/email/);

    const listed = JSON.parse(await outbox(env, 'parked', 'list', '--json')) as { event_id: string; park_reason: string; held_back: string }[];
    expect(listed.map((p) => p.event_id).sort()).toEqual([a2, c1].sort());
    expect(listed.find((p) => p.event_id === c1)?.park_reason).toMatch(/email/);
    expect(listed.find((p) => p.event_id === a2)?.held_back).toBe('1');

    // Fix the schema (a new event type file), restart the relay with it, and retry the parked event.
    await relay.stop();
    writeFileSync(
      path.join(schemasDir, 'user', 'UserNicknameSet.v1.avsc'),
      JSON.stringify({ type: 'record', name: 'UserNicknameSetPayload', fields: [{ name: 'nickname', type: 'string' }] }),
    );
    relay = start();
    await outbox(env, 'parked', 'retry', a2);
    // Skip the other one: it stays in the history, is never published, and C's next event flows.
    await outbox(env, 'parked', 'skip', c1, '--reason', 'payload predates the email requirement');

    await waitUntil('everything delivered', async () => {
      const { rows } = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL');
      return rows[0]!.n === '0';
    });
    onTopic = await readTopics(kafka, [topic], { count: 9 });
    expect(eventIds('A')).toEqual([a1, a2, a3]);
    expect(eventIds('C')).toEqual([c2]);
    expect(eventIds('B')).toHaveLength(5);
  } finally {
    await relay.stop();
  }
});
