import { useTestDatabase } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { runDualWriteScenario } from './dual-write-scenario';

// Proof-suite scenario "dual-write baseline", heavier variant of dual-write.test.ts: a minute of the
// same workload in both designs, writers and relay killed -9 six times at the same moments.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test('dual write vs kafka-outbox, a minute with kill -9 x6: dual write loses, kafka-outbox loses none', async () => {
  const r = await runDualWriteScenario(db, (c) => children.push(c), { label: 'dual-write-baseline-long', seconds: 60, kills: 6 });
  expect(r.dualWrite.lost).toBeGreaterThan(0);
  expect(r.outbox.state_changes_committed).toBeGreaterThan(5000);
  expect(r.outbox).toMatchObject({ lost: 0, reordered: 0, state_without_event: 0 });
}, 400_000);
