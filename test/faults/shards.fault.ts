import { useTestDatabase } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { handoverSummary, runShardChurn } from '../support/shard-churn';

// Active-active relays (OUTBOX_RELAY_SHARDED), the long variant of test/relay/shards.test.ts: four
// instances over the 32 shards, one killed (-9) and another started every 3 s for about a minute under
// a steady write load, in both publishing modes (a transactional producer per shard; one idempotent
// producer). Each kill waits for the instance started before it to have joined, and kills one that owns
// shards, so that every kill hands shards over to survivors. Goal: 0 lost, 0 reordered, no shard
// published by two instances at once; the handover of each kill is printed, step by step.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];

afterAll(async () => {
  for (const c of children) await killHard(c);
});

for (const transactional of [true, false]) {
  test(`sharded relays (transactional ${transactional}), killed and added for a minute: 0 lost, 0 reordered, no shard published by two at once`, async () => {
    const r = await runShardChurn({ db, children, instances: 4, total: 30_000, ratePerSec: 500, minRounds: 15, roundMs: 3000, transactional, joinBeforeKill: true });
    const { duplicateEventIds: _, ...report } = r.report;
    const sorted = [...r.handoversMs].sort((a, b) => a - b);
    process.stdout.write(
      `shards fault (transactional ${transactional}): ${JSON.stringify(report)}; ${r.publications.length} publications by ${r.instancesStarted} instances; ` +
        `dead shards owned again after p50 ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted.at(-1)} ms (${r.handoversMs.join(', ')}); ${r.phases.join(', ')}\n  ${handoverSummary(r)}\n` +
        r.handoverDetails.map((d) => `  ${d}\n`).join(''),
    );
    expect(r.report.lost).toBe(0);
    expect(r.report).toMatchObject({ reordered: 0, unexpected: 0, divergent: 0, malformed: 0 });
    expect(r.overlaps).toEqual([]);
  }, 900_000);
}
