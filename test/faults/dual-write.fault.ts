import { crashComparison, lossTable } from '../../bench/dual-write';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { printFigures } from '../support/ledger-verifier';
import { killHard, type Child } from '../support/processes';
import { kafkaOf, scenarioEnv } from './support';

// Proof-suite scenario "dual-write baseline", heavier variant of dual-write.test.ts: a minute of the
// same workload in both designs, writers and relay killed -9 six times at the same moments.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test('dual write vs kafka-outbox, a minute with kill -9 x6: dual write loses, kafka-outbox loses none', async () => {
  const outboxTopic = uniqueName('dwo');
  const env = scenarioEnv(db.url, outboxTopic);
  const r = await crashComparison({
    databaseUrl: db.url,
    pool: db.pool,
    env,
    kafka: kafkaOf(env),
    dualWriteTopic: uniqueName('dw'),
    outboxTopic,
    seconds: 60,
    kills: 6,
    concurrency: 8,
    ratePerSec: 1500, // busy writers: each kill catches dual writes between COMMIT and ack
    track: (c) => children.push(c),
  });
  printFigures('dual-write-baseline-long', r.dualWrite);
  printFigures('dual-write-baseline-long', r.outbox);
  process.stdout.write(`${lossTable(r)}\n`);
  expect(r.dualWrite.lost).toBeGreaterThan(0);
  expect(r.outbox.state_changes_committed).toBeGreaterThan(5000);
  expect(r.outbox).toMatchObject({ lost: 0, reordered: 0, state_without_event: 0 });
}, 400_000);
