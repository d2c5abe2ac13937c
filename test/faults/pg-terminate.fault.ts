import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { writeWorkload } from '../support/workload';
import { kafkaOf, scenarioEnv, seedUsers, sleep, spawnProjector, spawnRelay, verifyAndPrint, ZERO } from './support';

// Proof-suite scenario "PostgreSQL pg_terminate_backend on our connections": every ~2 s all backends of
// the relay and the projector on the test database are terminated (what a PostgreSQL restart does to
// them), and every 5th round three times within a second (a restart as seen by clients that reconnect
// at once). The machine's PostgreSQL is shared with other engineers, so it is NOT restarted for real:
// only our own backends are terminated. The writers (another application_name) keep committing.
// The relay and the projector run as processes under a supervisor loop (as in production: a process
// that exits is restarted); exits are counted and reported.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

/** Keep a process running: restart it whenever it exits, until stop(); counts the exits. */
function supervise(start: () => Promise<Child>): { exits: () => number; stop(): Promise<void> } {
  let stopped = false;
  let exits = 0;
  let current: Child | undefined;
  const loop = (async () => {
    while (!stopped) {
      current = await start();
      await current.exited;
      if (!stopped) exits += 1;
    }
  })();
  return {
    exits: () => exits,
    async stop() {
      stopped = true;
      if (current) await killHard(current);
      await loop.catch(() => undefined);
    },
  };
}

async function terminateOurs(dbName: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: string }>(
    `SELECT count(pg_terminate_backend(pid))::text AS n FROM pg_stat_activity
      WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name IN ('kafka-outbox-relay', 'kafka-outbox-relay-leader', 'outbox-projector', 'kafka-outbox')`,
    [dbName],
  );
  return Number(rows[0]!.n);
}

test('relay and projector backends terminated every ~2 s under load: 0 lost, 0 reordered, 0 double-applied', async () => {
  const topic = uniqueName('pgterm');
  const env = scenarioEnv(db.url, topic);
  const aggregates = 150;
  await seedUsers(db.pool, aggregates);
  const group = uniqueName('g');
  const relay = supervise(() => spawnRelay(env, children, { waitLeader: false }));
  const projector = supervise(() => spawnProjector(env, [topic], group, children));
  try {
    await sleep(3000);
    const total = 12_000;
    let done = false;
    const writing = writeWorkload(db.pool, { writers: 3, total, aggregates, perTx: 4, ratePerSec: 400 }).finally(() => (done = true));
    let rounds = 0;
    let terminated = 0;
    while (!done) {
      await sleep(1500 + Math.random() * 1000);
      rounds += 1;
      terminated += await terminateOurs(db.name);
      if (rounds % 5 === 0) {
        for (let i = 0; i < 2; i++) {
          await sleep(300);
          terminated += await terminateOurs(db.name);
        }
      }
    }
    expect(await writing).toBe(total);
    const report = await verifyAndPrint('pg-terminate-backend', db.pool, kafkaOf(env), [topic], { projections: true }, {
      rounds,
      backends_terminated: terminated,
      relay_process_exits: relay.exits(),
      projector_process_exits: projector.exits(),
      postgres_restarted: false,
    });
    expect(report).toMatchObject({ committed: total + aggregates, ...ZERO });
    expect(terminated).toBeGreaterThan(rounds); // the terminations really hit our connections
    // Neither process may die of it: a lost connection is an error to retry, not a crash.
    expect({ relay: relay.exits(), projector: projector.exits() }).toEqual({ relay: 0, projector: 0 });
  } finally {
    await projector.stop();
    await relay.stop();
  }
}, 300_000);
