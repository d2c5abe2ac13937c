import { useTestDatabase } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { runDualWriteScenario } from './dual-write-scenario';

// Proof-suite scenario "dual-write baseline" (also in npm test): see dual-write-scenario.ts. The dual
// write loses state changes (committed, never on Kafka); kafka-outbox loses none and never has a state
// change without its event. `npm run test:faults` runs the heavier variant (dual-write.fault.ts);
// `npx tsx bench/dual-write.ts` is the standalone bench.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test('dual write loses events under kill -9; kafka-outbox under the same kills loses none', async () => {
  const r = await runDualWriteScenario(db, (c) => children.push(c), { label: 'dual-write-baseline', seconds: 20, kills: 4 });
  expect(r.dualWrite.state_changes_committed).toBeGreaterThan(1000);
  expect(r.dualWrite.lost).toBeGreaterThan(0);
  expect(r.outbox.state_changes_committed).toBeGreaterThan(1000);
  expect(r.outbox).toMatchObject({ lost: 0, reordered: 0, state_without_event: 0 });
}, 300_000);
