import { useTestDatabase } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { handoverSummary, runShardChurn } from '../support/shard-churn';

// Active-active relays (OUTBOX_RELAY_SHARDED, transactional: a producer per shard): four instances
// share the 32 shards; under a write load one is killed (-9) and another started every couple of
// seconds. Once the churn stops, a tail of events is written, so that every instance left running,
// including those added last, publishes its share. Nothing is lost or reordered, every shard is owned again once the churn stops, and no shard
// was ever published by two instances at once. The longer variant: test/faults/shards.fault.ts.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];

afterAll(async () => {
  for (const c of children) await killHard(c);
});

test('four sharded relays, killed and added under load: 0 lost, 0 reordered, no shard published by two at once', async () => {
  const r = await runShardChurn({ db, children, instances: 4, total: 5_000, ratePerSec: 500, minRounds: 3, roundMs: 1500, transactional: true });
  const { duplicateEventIds: _, ...report } = r.report;
  const sorted = [...r.handoversMs].sort((a, b) => a - b);
  process.stdout.write(
    `sharded relays: ${JSON.stringify(report)}; ${r.publications.length} publications by ${r.instancesStarted} instances; ` +
      `dead instances' shards owned again after ${r.handoversMs.join(', ')} ms (p50 ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted.at(-1)} ms); ${r.phases.join(', ')}\n  ${handoverSummary(r)}\n` +
      r.handoverDetails.map((d) => `  ${d}\n`).join(''),
  );
  expect(r.written).toBe(5_640);
  expect(r.report).toMatchObject({ committed: r.written, lost: 0, reordered: 0, unexpected: 0, divergent: 0, malformed: 0 });
  expect(r.overlaps).toEqual([]);
  expect(new Set(r.publications.map((p) => p.instance)).size).toBeGreaterThanOrEqual(5);
  // Every instance left running after the churn publishes its share (the tail written then).
  expect(r.tailPublishers).toEqual([...r.finalInstances].sort());
}, 300_000);
