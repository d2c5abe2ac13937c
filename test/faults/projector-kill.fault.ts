import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { writeWorkload } from '../support/workload';
import { appPool, inProcessRelay, kafkaOf, scenarioEnv, seedUsers, sleep, spawnProjector, verifyAndPrint, ZERO } from './support';

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
  const { rows } = await db.pool.query<{ s: string | null }>('SELECT sum(last_offset)::text AS s FROM projector_offsets').catch(() => ({ rows: [{ s: null }] }));
  return rows[0]!.s ?? '';
}

test('projector kill -9 six times around its commits: 0 lost, 0 reordered, 0 double-applied', async () => {
  const topic = uniqueName('pkill');
  const env = scenarioEnv(db.url, topic, { OUTBOX_PROJECTOR_BATCH_SIZE: '100', LOG_LEVEL: 'error' });
  const aggregates = 200;
  // Writers, relay and projector as their least-privilege roles; db.pool (the test's login) only observes.
  const writers = appPool(db.url);
  await seedUsers(writers, aggregates);
  const relay = inProcessRelay(env);
  const group = uniqueName('g');
  try {
    const total = 15_000;
    const writing = writeWorkload(writers, { writers: 3, total, aggregates, perTx: 5, ratePerSec: 500 });
    const kills: string[] = [];
    /** Per after-commit kill: the checkpoint before and the one seen moving (equal = the commit never came). */
    const commitsSeen: Array<{ before: string; moved: string }> = [];
    for (let k = 0; k < 6; k++) {
      const p = await spawnProjector(env, [topic], group, children);
      if (k % 2 === 0) {
        // Right after a commit: wait until the checkpoint moves, then kill at once.
        const before = await checkpoint();
        const deadline = Date.now() + 60_000;
        let now = before;
        while ((now = await checkpoint()) === before && Date.now() < deadline) await sleep(5);
        commitsSeen.push({ before, moved: now });
        kills.push('after-commit');
      } else {
        await sleep(1000 + Math.random() * 2500);
        kills.push('mid-batch');
      }
      await killHard(p);
    }
    expect(await writing).toBe(total);
    const last = await spawnProjector(env, [topic], group, children);
    const report = await verifyAndPrint(
      'projector-kill-9',
      db.pool,
      kafkaOf(env),
      [topic],
      { projections: true },
      {
        kills: kills.length,
        kill_points: kills,
        checkpoint_at_after_commit_kills: commitsSeen.map((c) => `${c.before || 'none'}->${c.moved}`),
      },
    );
    last.proc.kill('SIGTERM');
    await last.exited;
    // The relay is never killed here: not even a duplicate on the topic.
    expect(report).toMatchObject({ committed: total + aggregates, ...ZERO });
    // Each "after-commit" kill really followed a commit: the checkpoint moved just before it.
    expect(commitsSeen).toHaveLength(3);
    expect(commitsSeen.filter((c) => c.moved === c.before)).toEqual([]);
  } finally {
    await relay.stop();
    await writers.end();
  }
}, 400_000);
