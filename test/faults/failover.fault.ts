import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { writeWorkload } from '../support/workload';
import { inProcessProjector, kafkaOf, scenarioEnv, seedUsers, sleep, spawnRelay, verifyAndPrint, ZERO } from './support';

// Proof-suite scenario "failover between relay instances" under load: three relay processes (one
// leader, two standbys); the leader is killed -9 four times, each time a fresh standby is started in its
// place. Handover = kill → first delivery by the new leader. test/relay/failover.test.ts asserts the
// single-handover time bound; this heavier variant checks the whole run end to end (topic + projections).
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test('leader relay killed -9 four times among three instances: 0 lost, 0 reordered, 0 double-applied', async () => {
  const topic = uniqueName('failover');
  const env = scenarioEnv(db.url, topic, { RELAY_STANDBY_POLL_MS: '1000' });
  const aggregates = 150;
  await seedUsers(db.pool, aggregates);
  const projector = await inProcessProjector(env, uniqueName('g'));
  try {
    const relays = await Promise.all([0, 1, 2].map(() => spawnRelay(env, children, { waitLeader: false })));
    const total = 12_000;
    let done = false;
    const writing = writeWorkload(db.pool, { writers: 3, total, aggregates, perTx: 4, ratePerSec: 400 }).finally(() => (done = true));
    const handovers: number[] = [];
    for (let k = 0; k < 4 && !done; k++) {
      await sleep(4000 + Math.random() * 2000);
      const leader = relays.find((r) => r.output().trimEnd().split('\n').filter((l) => l === 'leader' || l === 'standby').pop() === 'leader');
      if (!leader) continue;
      const killedAt = Date.now();
      await killHard(leader);
      relays.splice(relays.indexOf(leader), 1);
      let ms = -1;
      for (let i = 0; i < 600 && ms < 0; i++) {
        const { rows } = await db.pool.query<{ n: string }>(
          'SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at > to_timestamp($1::double precision / 1000)',
          [killedAt],
        );
        if (Number(rows[0]!.n) > 0) ms = Date.now() - killedAt;
        else await sleep(50);
      }
      handovers.push(ms);
      relays.push(await spawnRelay(env, children, { waitLeader: false }));
    }
    expect(await writing).toBe(total);
    const report = await verifyAndPrint('relay-failover', db.pool, kafkaOf(env), [topic], { projections: true }, { failovers: handovers.length, handover_ms: handovers });
    expect(report).toMatchObject({ committed: total + aggregates, ...ZERO });
    expect(handovers.length).toBeGreaterThanOrEqual(3);
    expect(handovers.every((ms) => ms >= 0)).toBe(true);
    for (const r of relays) await killHard(r);
  } finally {
    await projector.stop();
  }
}, 300_000);
