import type { TestDatabase } from '../support/isolation';
import { uniqueName } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { writeWorkload } from '../support/workload';
import {
  appPool,
  awaitBacklog,
  ROLES,
  deliveredCount,
  inProcessProjector,
  kafkaOf,
  scenarioEnv,
  seedUsers,
  sleep,
  spawnRelay,
  verifyAndPrint,
  ZERO_EXCEPT_COPIES,
} from './support';

/**
 * Relay kill -9 every ~`killEveryMs` (±40 %) while writers commit `ratePerSec` events/s for `seconds`;
 * the projector (in-process) builds the read models meanwhile. Shared by relay-kill.test.ts (short, in
 * npm test) and relay-kill.fault.ts (kill every ~10 s for a minute). Writers, relay and projector run as
 * their least-privilege roles.
 */
export async function relayKillScenario(db: TestDatabase, children: Child[], o: { seconds: number; ratePerSec: number; killEveryMs: number; scenario: string }): Promise<void> {
  const topic = uniqueName('rkill');
  const env = scenarioEnv(db.url, topic, { OUTBOX_RELAY_BATCH_SIZE: '500' });
  const aggregates = 200;
  // Writers as the application's role, the relay and the projector as theirs; db.pool (the test's login) only observes.
  const writers = appPool(db.url);
  await seedUsers(writers, aggregates);
  const projector = await inProcessProjector(env, uniqueName('g'));
  try {
    let relay = await spawnRelay(env, children);
    const total = o.seconds * o.ratePerSec;
    let writingDone = false;
    const writing = writeWorkload(writers, { writers: 4, total, aggregates, perTx: 5, ratePerSec: o.ratePerSec }).finally(() => (writingDone = true));
    const deliveredAtKill: number[] = [];
    const backlogAtKill: number[] = [];
    for (;;) {
      await sleep(o.killEveryMs * (0.6 + Math.random() * 0.8));
      if (writingDone) break; // a kill after the writes could find nothing left to interrupt
      // Kill a relay at work: one that has delivered since the last kill (a relay still starting up has
      // nothing in flight), while committed events wait for it (not a moment where it happens to be idle).
      const previous = deliveredAtKill[deliveredAtKill.length - 1] ?? 0;
      for (let i = 0; i < 600 && (await deliveredCount(db.pool)) <= previous; i++) await sleep(50);
      backlogAtKill.push(await awaitBacklog(db.pool));
      deliveredAtKill.push(await deliveredCount(db.pool));
      await killHard(relay);
      relay = await spawnRelay(env, children);
    }
    expect(await writing).toBe(total);
    const report = await verifyAndPrint(
      o.scenario,
      db.pool,
      kafkaOf(env),
      [topic],
      { projections: true },
      {
        kills: deliveredAtKill.length,
        delivered_at_each_kill: deliveredAtKill,
        backlog_at_each_kill: backlogAtKill,
      },
    );
    // A kill between the broker's ack and the mark re-publishes: copies are allowed, and reported.
    expect(report).toMatchObject({ committed: total + aggregates, ...ZERO_EXCEPT_COPIES });
    expect(report.duplicated).toBeLessThanOrEqual(deliveredAtKill.length * 500); // at most the claimed batch in flight at each kill
    expect(deliveredAtKill.length).toBeGreaterThanOrEqual(2);
    // Every kill landed on work in flight: a backlog at each, and deliveries before and after each.
    expect(backlogAtKill.filter((n) => n === 0)).toEqual([]);
    expect(deliveredAtKill[0]).toBeGreaterThan(0);
    for (let i = 1; i < deliveredAtKill.length; i++) expect(deliveredAtKill[i]!).toBeGreaterThan(deliveredAtKill[i - 1]!);
    await killHard(relay);
    // The projector ran as its role: the read model it created belongs to it.
    const owners = await db.pool.query<{ owner: string }>(
      `SELECT DISTINCT pg_get_userbyid(n.nspowner) AS owner FROM projector_generations g JOIN pg_namespace n ON n.nspname = g.pg_schema WHERE g.status = 'live'`,
    );
    expect(owners.rows).toEqual([{ owner: ROLES.projector }]);
  } finally {
    await projector.stop();
    await writers.end();
  }
}
