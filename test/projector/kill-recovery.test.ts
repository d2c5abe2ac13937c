import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { trackRunning } from '../../core/lifecycle';
import { silentLogger } from '../../core/logger';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { REPO_ROOT } from '../support/stack';
import { expectedUsers, projectorFixture, type TestEvent, waitFor } from './support';

// kill -9 of the projector process 5 times during a 20,000-event run: the read model equals a fold of
// the written events, no event applied twice, none missed.
const db = useTestDatabase();
const logger = silentLogger();
const children = new Set<ChildProcess>();

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

const TOTAL = 20_000;
const USERS = 400;

function spawnProjector(env: NodeJS.ProcessEnv, options: object): { child: ChildProcess; ready: Promise<void>; exited: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'projector/projector-process.ts'), JSON.stringify(options)], {
    cwd: REPO_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const untrack = trackRunning('child-process', `projector-${child.pid}`);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) =>
    child.on('exit', () => {
      children.delete(child);
      untrack();
      resolve();
    }),
  );
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
    child.on('exit', (code, signal) => reject(new Error(`projector process exited (${code ?? signal}) before ready: ${stderr}`)));
  });
  ready.catch(() => undefined);
  return { child, ready, exited };
}

test('kill -9 five times during a 20,000-event run: read model = fold of the events, nothing applied twice or missed', async () => {
  const { topic, namespace, streams, produce } = await projectorFixture(db.url, logger, { partitions: 3 });
  let seed = 42;
  const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const perUser: TestEvent[][] = Array.from({ length: USERS }, (_, i) => streams.life(`u${i}`, TOTAL / USERS, rnd));
  // Interleave users (as concurrent writers would), per-user order kept.
  const events: TestEvent[] = [];
  for (let j = 0; j < TOTAL / USERS; j++) for (const list of perUser) events.push(list[j]!);

  const produced = produce(events, { idempotent: true, maxInFlightRequests: 1 });

  const env = {
    ...process.env,
    DATABASE_URL: db.url,
    LOG_LEVEL: 'error',
    OUTBOX_PROJECTOR_BATCH_SIZE: '250',
    OUTBOX_SNAPSHOT_EVERY: '10',
  };
  const options = { topics: [topic], groupIdPrefix: uniqueName('g'), catalogNamespace: namespace, sessionTimeoutMs: 6000 };
  const count = async (): Promise<number> => {
    const r = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM projector_seen_events').catch(() => ({ rows: [{ n: 0 }] }));
    return r.rows[0]!.n;
  };

  let kills = 0;
  for (let i = 0; i < 5; i++) {
    const p = spawnProjector(env, options);
    await p.ready;
    const before = await count();
    // Let it make progress (both projections together apply 2 rows per event), then SIGKILL mid-stream.
    await waitFor('progress', async () => (await count()) >= before + 1500 + Math.floor(Math.random() * 1500), 120_000, 50);
    p.child.kill('SIGKILL');
    await p.exited;
    kills++;
  }
  expect(kills).toBe(5);
  const killedAt = await count();
  expect(killedAt).toBeLessThan(2 * TOTAL); // the kills happened during the run

  await produced;
  const last = spawnProjector(env, options);
  await last.ready;
  await waitFor('all events applied', async () => (await count()) === 2 * TOTAL, 180_000, 250);
  // Let any stray redelivery arrive before checking.
  await new Promise((r) => setTimeout(r, 1500));
  last.child.kill('SIGTERM');
  await last.exited;

  const audit = await db.pool.query<{ n: number; d: number; broken: number }>(
    `SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS d, count(*) FILTER (WHERE chain_status <> 'ok')::int AS broken FROM audit_log`,
  );
  expect(audit.rows[0]).toEqual({ n: TOTAL, d: TOTAL, broken: 0 });
  const dlq = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM projector_dead_letters');
  expect(dlq.rows[0]!.n).toBe(0);

  const expected = expectedUsers(events);
  const { rows } = await db.pool.query<Record<string, unknown> & { user_id: string }>(
    'SELECT user_id, email, email_verified, first_name, last_name, active, version::int AS version, events_applied FROM users',
  );
  expect(rows).toHaveLength(USERS);
  let mismatches = 0;
  let appliedTwice = 0;
  let missed = 0;
  for (const r of rows) {
    const { user_id, ...actual } = r;
    const want = expected.get(user_id);
    if (JSON.stringify(actual) !== JSON.stringify(want)) mismatches++;
    const applied = Number(actual.events_applied);
    if (applied > Number(actual.version)) appliedTwice++;
    if (applied < TOTAL / USERS) missed++;
  }
  expect({ mismatches, appliedTwice, missed }).toEqual({ mismatches: 0, appliedTwice: 0, missed: 0 });

  // Snapshots were taken every 10 versions; loading from them equals the read model.
  const snaps = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM projector_snapshots');
  expect(snaps.rows[0]!.n).toBe(USERS * (TOTAL / USERS / 10));
}, 400_000);
