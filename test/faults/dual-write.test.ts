import { crashComparison, lossTable } from '../../bench/dual-write';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { kafkaOf, scenarioEnv } from './support';
import { printFigures } from '../support/ledger-verifier';

// Proof-suite scenario "dual-write baseline" (also in npm test): the same workload — change a user's
// email — written (a) as UPDATE, COMMIT, then producer.send (no outbox) and (b) with kafka-outbox
// (UPDATE + event in one transaction, relay publishes), both in child processes killed -9 at the same
// moments (writers and relay). The dual write loses state changes (committed, never on Kafka); kafka-outbox
// loses none and never has a state change without its event. `npm run test:faults` runs the heavier
// variant (dual-write.fault.ts); `npx tsx bench/dual-write.ts` is the standalone bench.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test('dual write loses events under kill -9; kafka-outbox under the same kills loses none', async () => {
  const outboxTopic = uniqueName('dwo');
  const env = scenarioEnv(db.url, outboxTopic);
  const r = await crashComparison({
    databaseUrl: db.url,
    pool: db.pool,
    env,
    kafka: kafkaOf(env),
    dualWriteTopic: uniqueName('dw'),
    outboxTopic,
    // Busy writers (1,500 changes/s over 8 connections): every kill lands while several dual writes are
    // between their COMMIT and the broker's ack, so the baseline's loss does not depend on luck.
    seconds: 20,
    kills: 4,
    concurrency: 8,
    ratePerSec: 1500,
    track: (c) => children.push(c),
  });
  printFigures('dual-write-baseline', r.dualWrite);
  printFigures('dual-write-baseline', r.outbox);
  process.stdout.write(`${lossTable(r)}\n`);
  expect(r.dualWrite.state_changes_committed).toBeGreaterThan(1000);
  expect(r.dualWrite.lost).toBeGreaterThan(0);
  expect(r.outbox.state_changes_committed).toBeGreaterThan(1000);
  expect(r.outbox).toMatchObject({ lost: 0, reordered: 0, state_without_event: 0 });
}, 300_000);
