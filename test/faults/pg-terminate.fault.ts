import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { writeWorkload } from '../support/workload';
import { kafkaOf, scenarioEnv, seedUsers, sleep, spawnProjector, spawnRelay, supervise, verifyAndPrint, ZERO_EXCEPT_COPIES } from './support';

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

/** Terminate the relay's and the projector's backends on the test database; counts per application_name. */
async function terminateOurs(dbName: string): Promise<Record<string, number>> {
  const { rows } = await db.pool.query<{ app: string; n: string }>(
    `SELECT application_name AS app, count(pg_terminate_backend(pid))::text AS n FROM pg_stat_activity
      WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name IN ('kafka-outbox-relay', 'kafka-outbox-relay-leader', 'outbox-projector', 'kafka-outbox')
      GROUP BY application_name`,
    [dbName],
  );
  return Object.fromEntries(rows.map((r) => [r.app, Number(r.n)]));
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
    // The faults start once both processes hold connections (a child starting on a busy machine can take
    // 20 s or more: terminating before then would not reach it, and the scenario would not land).
    const connectedBy = Date.now() + 180_000;
    for (;;) {
      const { rows } = await db.pool.query<{ app: string }>(
        `SELECT DISTINCT application_name AS app FROM pg_stat_activity WHERE datname = $1 AND application_name IN ('outbox-projector', 'kafka-outbox-relay', 'kafka-outbox-relay-leader')`,
        [db.name],
      );
      const apps = rows.map((r) => r.app);
      if (apps.includes('outbox-projector') && apps.some((a) => a.startsWith('kafka-outbox-relay'))) break;
      if (Date.now() > connectedBy) throw new Error(`relay and projector not connected after 180 s (connected: ${apps.join(', ') || 'none'})`);
      await sleep(250);
    }
    const total = 12_000;
    let done = false;
    const writing = writeWorkload(db.pool, { writers: 3, total, aggregates, perTx: 4, ratePerSec: 400 }).finally(() => (done = true));
    let rounds = 0;
    let terminated = 0;
    const byApp: Record<string, number> = {};
    // Rounds in which the projector's own backends (application_name outbox-projector) were among those terminated.
    let projectorRounds = 0;
    let relayRounds = 0;
    const terminate = async (): Promise<Record<string, number>> => {
      const t = await terminateOurs(db.name);
      for (const [app, n] of Object.entries(t)) {
        byApp[app] = (byApp[app] ?? 0) + n;
        terminated += n;
      }
      return t;
    };
    while (!done) {
      await sleep(1500 + Math.random() * 1000);
      rounds += 1;
      const t = await terminate();
      if ((t['outbox-projector'] ?? 0) > 0) projectorRounds += 1;
      if ((t['kafka-outbox-relay'] ?? 0) + (t['kafka-outbox-relay-leader'] ?? 0) > 0) relayRounds += 1;
      if (rounds % 5 === 0) {
        for (let i = 0; i < 2; i++) {
          await sleep(300);
          await terminate();
        }
      }
    }
    expect(await writing).toBe(total);
    const report = await verifyAndPrint(
      'pg-terminate-backend',
      db.pool,
      kafkaOf(env),
      [topic],
      { projections: true },
      {
        rounds,
        backends_terminated: terminated,
        backends_terminated_by_application: byApp,
        rounds_hitting_projector: projectorRounds,
        rounds_hitting_relay: relayRounds,
        relay_process_exits: relay.exits(),
        projector_process_exits: projector.exits(),
        ...(relay.exits() + projector.exits() > 0 ? { exit_reasons: [...relay.reasons, ...projector.reasons] } : {}),
        postgres_restarted: false,
      },
    );
    // A relay whose connection dies between the broker's ack and the mark re-publishes: copies are allowed, and reported.
    expect(report).toMatchObject({ committed: total + aggregates, ...ZERO_EXCEPT_COPIES });
    // The terminations really hit both processes' own connections, round after round (a process that is
    // backing off after the previous round may hold no connection at the next one).
    expect(terminated).toBeGreaterThan(rounds);
    expect(projectorRounds).toBeGreaterThanOrEqual(Math.ceil(rounds / 3));
    expect(relayRounds).toBeGreaterThanOrEqual(Math.ceil(rounds / 3));
    // Neither process may die of it: a lost connection is an error to retry, not a crash.
    expect({ relay: relay.exits(), projector: projector.exits() }).toEqual({ relay: 0, projector: 0 });
  } finally {
    await projector.stop();
    await relay.stop();
  }
}, 300_000);
