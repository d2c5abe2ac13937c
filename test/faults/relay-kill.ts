import type { TestDatabase } from '../support/isolation';
import { uniqueName } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { writeWorkload } from '../support/workload';
import { deliveredCount, inProcessProjector, kafkaOf, scenarioEnv, seedUsers, sleep, spawnRelay, verifyAndPrint, ZERO } from './support';

/**
 * Relay kill -9 every ~`killEveryMs` (±40 %) while writers commit `ratePerSec` events/s for `seconds`;
 * the projector (in-process) builds the read models meanwhile. Shared by relay-kill.test.ts (short, in
 * npm test) and relay-kill.fault.ts (kill every ~10 s for a minute).
 */
export async function relayKillScenario(db: TestDatabase, children: Child[], o: { seconds: number; ratePerSec: number; killEveryMs: number; scenario: string }): Promise<void> {
  const topic = uniqueName('rkill');
  const env = scenarioEnv(db.url, topic, { OUTBOX_RELAY_BATCH_SIZE: '500' });
  const aggregates = 200;
  await seedUsers(db.pool, aggregates);
  const projector = await inProcessProjector(env, uniqueName('g'));
  try {
    let relay = await spawnRelay(env, children);
    const total = o.seconds * o.ratePerSec;
    let writingDone = false;
    const writing = writeWorkload(db.pool, { writers: 4, total, aggregates, perTx: 5, ratePerSec: o.ratePerSec }).finally(() => (writingDone = true));
    const deliveredAtKill: number[] = [];
    while (!writingDone) {
      await sleep(o.killEveryMs * (0.6 + Math.random() * 0.8));
      deliveredAtKill.push(await deliveredCount(db.pool));
      await killHard(relay);
      relay = await spawnRelay(env, children);
    }
    expect(await writing).toBe(total);
    const report = await verifyAndPrint(o.scenario, db.pool, kafkaOf(env), [topic], { projections: true }, { kills: deliveredAtKill.length, delivered_at_each_kill: deliveredAtKill });
    expect(report).toMatchObject({ committed: total + aggregates, ...ZERO });
    expect(deliveredAtKill.length).toBeGreaterThanOrEqual(2);
    await killHard(relay);
  } finally {
    await projector.stop();
  }
}
