import { startRelay } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { writeWorkload } from '../support/workload';
import { kafkaOf, logger, scenarioConfig, scenarioEnv, seedUsers, sleep, spawnProjector, verifyAndPrint, ZERO } from './support';

// Proof-suite scenario "projector kill -9 around its commit", end to end (writers → outbox → relay →
// Kafka → projector child process): the projector's database checkpoint is polled every few ms and the
// process is killed -9 right after a batch commit is seen (odd kills) or at a random moment mid-batch
// (even kills). test/projector/kill-recovery.test.ts proves the projector alone on produced events; here
// the whole pipeline runs and the verifier compares the read models with a fold of the outbox ledger.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

async function checkpoint(): Promise<string> {
  const { rows } = await db.pool
    .query<{ s: string | null }>('SELECT sum(last_offset)::text AS s FROM projector_offsets')
    .catch(() => ({ rows: [{ s: null }] }));
  return rows[0]!.s ?? '';
}

test('projector kill -9 six times around its commits: 0 lost, 0 reordered, 0 double-applied', async () => {
  const topic = uniqueName('pkill');
  const env = scenarioEnv(db.url, topic, { OUTBOX_PROJECTOR_BATCH_SIZE: '100', LOG_LEVEL: 'error' });
  const aggregates = 200;
  await seedUsers(db.pool, aggregates);
  const relay = startRelay({ config: scenarioConfig(env), logger });
  const group = uniqueName('g');
  try {
    const total = 15_000;
    const writing = writeWorkload(db.pool, { writers: 3, total, aggregates, perTx: 5, ratePerSec: 500 });
    const kills: string[] = [];
    for (let k = 0; k < 6; k++) {
      const p = await spawnProjector(env, [topic], group, children);
      if (k % 2 === 0) {
        // Right after a commit: wait until the checkpoint moves, then kill at once.
        const before = await checkpoint();
        const deadline = Date.now() + 60_000;
        while ((await checkpoint()) === before && Date.now() < deadline) await sleep(5);
        kills.push('after-commit');
      } else {
        await sleep(1000 + Math.random() * 2500);
        kills.push('mid-batch');
      }
      await killHard(p);
    }
    expect(await writing).toBe(total);
    const last = await spawnProjector(env, [topic], group, children);
    const report = await verifyAndPrint('projector-kill-9', db.pool, kafkaOf(env), [topic], { projections: true }, { kills: kills.length, kill_points: kills });
    last.proc.kill('SIGTERM');
    await last.exited;
    expect(report).toMatchObject({ committed: total + aggregates, ...ZERO });
  } finally {
    await relay.stop();
  }
}, 400_000);
