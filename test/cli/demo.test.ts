import pg from 'pg';
import { loadConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { adminUrl } from '../support/global-setup';
import { uniqueName } from '../support/isolation';
import { childEnv, emptyEnvFile, runOutbox } from './run-outbox';

// `outbox demo` end to end, as `npm run demo` runs it (minus deps/stack start-up), against the shared
// stack. The demo creates its own database (here a unique one instead of outbox_demo, so a developer's
// demo database and the tests never meet), topic `<database>.user.events` and consumer groups; all are
// removed afterwards (the database is kept if a test failed). Admin ports 0: any free ones.
const database = uniqueName('demo');
const env = childEnv({
  OUTBOX_ENV_FILE: emptyEnvFile(),
  DATABASE_URL: process.env.DATABASE_URL!,
  KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
  SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
  KAFKA_CONNECTION_TIMEOUT_MS: '3000',
});
const args = ['demo', '--database', database, '--relay-port', '0', '--projector-port', '0', '--hold', '2'];

afterAll(async () => {
  const config = loadConfig({ ...env }, { kafka: true });
  const admin = createKafka(config.kafka, silentLogger(), 'demo-test-cleanup').admin();
  await admin.connect();
  try {
    const topic = `${database}.user.events`;
    const existing = new Set(await admin.listTopics());
    const topics = [topic, `${topic}.dlq`].filter((t) => existing.has(t));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(`outbox-demo-${database}.`));
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
  if ((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed) {
    process.stderr.write(`kept database ${database} of a failed demo test for inspection\n`);
    return;
  }
  const c = new pg.Client({ connectionString: adminUrl(process.env.DATABASE_URL!) });
  await c.connect();
  try {
    await c.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
  } finally {
    await c.end();
  }
}, 60_000);

function count(stdout: string, pattern: RegExp): number {
  const m = pattern.exec(stdout);
  if (!m) throw new Error(`no match for ${pattern} in the demo output:\n${stdout}`);
  return Number(m[1]);
}

test('outbox demo: exit 0; written = published = projected; users table; audit history with the chain verified', async () => {
  const r = await runOutbox(args, env, 110_000);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  const out = r.stdout;
  const run = /kafka-outbox demo — run ([0-9a-f]{6})/.exec(out)?.[1];
  expect(run).toBeDefined();
  expect(out).toContain(`(created; the demo's own, kept between runs)`);
  expect(out).toMatch(/relay {6}running, admin http:\/\/127\.0\.0\.1:\d+\/metrics/);
  expect(out).toMatch(/projector {2}running, admin http:\/\/127\.0\.0\.1:\d+\/metrics/);

  // The 412 story and the late transaction.
  expect(out).toMatch(/If-Match "1" \(client B\)\s+→ 412 Precondition Failed, ETag "2" \(current version\)/);
  expect(out).toMatch(/late transaction committed after [2-9]\.\d+s: outbox id \d+, lower than the ids \d+, \d+, \d+ committed \(and published\) meanwhile/);
  expect(out).toMatch(/late event {9}outbox id \d+, committed [\d.]+s late → on the topic \(partition \d+, offset \d+\), projected/);

  // Counts: written = published (delivered and read back from the topic) = projected.
  const written = count(out, /events written {5}(\d+)/);
  const delivered = count(out, /events published {3}(\d+) {2}\(outbox_delivery delivered\)/);
  const readBack = count(out, /(\d+) read back from /);
  const projected = count(out, /events projected {3}(\d+) {2}\(audit_log rows\)/);
  expect(written).toBe(12);
  expect({ delivered, readBack, projected }).toEqual({ delivered: written, readBack: written, projected: written });
  expect(count(out, /(\d+) users rows/)).toBe(5);
  expect(out).toContain('written = published = projected: yes');

  // The users read model as a table: the five users of this run, as the workload left them.
  expect(out).toMatch(/^USER_ID +EMAIL +NAME +ACTIVE +VERSION +EVENTS$/m);
  expect(out).toMatch(new RegExp(`^grace-${run} +g\\.hopper\\+${run}@example\\.org +Grace Brewster Hopper +yes +4 +4$`, 'm'));
  expect(out).toMatch(new RegExp(`^alan-${run} +alan\\+${run}@example\\.com +Alan Turing +no \\(account closed`, 'm'));
  for (const key of ['ada', 'edsger', 'barbara']) expect(out).toMatch(new RegExp(`^${key}-${run} .* 2 +2$`, 'm'));

  // One user's audit history: actor, trace and correlation ids, type, version, time; chain verified.
  expect(out).toContain(`audit history of user/grace-${run}`);
  expect(out).toMatch(/^VERSION +OCCURRED_AT +EVENT +ACTOR +TRACE_ID +CORRELATION_ID +CHAIN +HASH$/m);
  expect(out).toMatch(new RegExp(`^1 +\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +UserRegistered v1 +service:signup +[0-9a-f]{32} +req-${run}-02 +ok `, 'm'));
  expect(out).toMatch(new RegExp(`^3 +\\S+ +UserEmailChanged v2 +user:support-7 +[0-9a-f]{32} +req-${run}-08 +ok `, 'm'));
  expect(out).toMatch(new RegExp(`^4 +\\S+ +UserRenamed v2 +user:grace-${run} +[0-9a-f]{32} +req-${run}-09 +ok `, 'm'));
  expect(out).toMatch(
    new RegExp(`^chain verified: verifyChain recomputed 4 event\\(s\\) of user/grace-${run} from the outbox; 4 link\\(s\\) checked on arrival by audit_log: all ok`, 'm'),
  );
  expect(out).toMatch(
    new RegExp(`^console: DATABASE_URL=\\S+/${database}\\S* OUTBOX_TOPIC_MAP=user=${database}\\.user\\.events node bin/outbox\\.js console  → http://127\\.0\\.0\\.1:9470$`, 'm'),
  );

  expect(out).toContain('The stack keeps running; stop it with: npm run stack:down');
  expect(out.trimEnd().endsWith('relay and projector stopped.')).toBe(true);
}, 120_000);

test('a second run on the same database works too; --json gives the summary', async () => {
  const r = await runOutbox([...args, '--json'], env, 110_000);
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  const summary = JSON.parse(r.stdout) as {
    run: string;
    counts: { written: number; published: { delivered: number; readBackFromTopic: number }; projected: { auditLog: number; users: number }; match: boolean };
    conflict: { status: number; currentVersion: number };
    lateTransaction: { published: boolean; projected: unknown; heldMs: number };
    users: Array<{ user_id: string; version: number }>;
    audit: {
      aggregate: string;
      events: Array<{ actor_id: string; trace_id: string; correlation_id: string; chain_status: string }>;
      chain: { verified: boolean; writer: { ok: boolean; checked: number } };
    };
  };
  expect(summary.counts).toEqual({ written: 12, published: { delivered: 12, readBackFromTopic: 12 }, projected: { auditLog: 12, users: 5 }, match: true });
  expect(summary.conflict).toEqual({ userId: `grace-${summary.run}`, ifMatch: 1, status: 412, currentVersion: 2 });
  expect(summary.lateTransaction).toMatchObject({ published: true, projected: expect.objectContaining({ topic: `${database}.user.events` }) });
  expect(summary.lateTransaction.heldMs).toBeGreaterThanOrEqual(2000);
  expect(summary.users.map((u) => u.user_id.replace(`-${summary.run}`, '')).sort()).toEqual(['ada', 'alan', 'barbara', 'edsger', 'grace']);
  expect(summary.audit.aggregate).toBe(`user/grace-${summary.run}`);
  expect(summary.audit.events).toHaveLength(4);
  for (const e of summary.audit.events) {
    expect(e).toMatchObject({
      actor_id: expect.stringMatching(/^(service|user):/),
      trace_id: expect.stringMatching(/^[0-9a-f]{32}$/),
      correlation_id: expect.stringMatching(/^req-/),
      chain_status: 'ok',
    });
  }
  expect(summary.audit.chain).toMatchObject({ verified: true, writer: { ok: true, checked: 4 } });
}, 120_000);

test('outbox rebuild on the demo database: --dry-run compares without swapping (JSON progress lines), --from-beginning swaps', async () => {
  const rebuildEnv = {
    ...env,
    // As the projector's role, which owns the demo's read models (a rebuild under another role is refused).
    DATABASE_URL: `${process.env.DATABASE_URL!.replace(/\/[^/]*$/, '')}/${database}?options=${encodeURIComponent('-c role=outbox_projector')}`,
    OUTBOX_TOPIC_MAP: `user=${database}.user.events`,
    KAFKA_CLIENT_ID: `outbox-demo-${database}`,
  };
  const dry = await runOutbox(['rebuild', 'users', '--dry-run'], rebuildEnv, 110_000);
  expect(dry.code).toBe(0);
  expect(dry.stdout).toMatch(/projection users: generation \d+ built from \d+ event\(s\) .* not swapped \(dry run\)/);
  const progress = dry.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { type?: string; phase: string; processed: number; total: number; eventsPerSecond: number; etaSeconds: number | null })
    .filter((p) => p.type === 'rebuild_progress'); // stderr also carries log lines
  expect(progress.length).toBeGreaterThan(0);
  for (const p of progress) expect(p).toMatchObject({ phase: expect.any(String), processed: expect.any(Number), total: expect.any(Number), eventsPerSecond: expect.any(Number) });
  expect(progress[progress.length - 1]!.processed).toBeGreaterThan(0);

  const both = await runOutbox(['rebuild', 'users', '--from-beginning', '--from-timestamp', '2026-01-01T00:00:00Z'], rebuildEnv, 30_000);
  expect(both.code).toBe(2);
  expect(both.stderr.trim()).toBe('outbox: --from-beginning and --from-timestamp exclude each other');

  const swap = await runOutbox(['rebuild', 'users', '--from-beginning', '--json'], rebuildEnv, 110_000);
  expect(swap.code).toBe(0);
  const result = JSON.parse(swap.stdout) as { swapped: boolean; events: number };
  expect(result.swapped).toBe(true);
  expect(result.events).toBeGreaterThanOrEqual(24); // two demo runs of 12 events
}, 240_000);
