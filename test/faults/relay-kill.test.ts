import { useTestDatabase } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { relayKillScenario } from './relay-kill';

// Proof-suite scenario "relay kill -9 under load", short variant (in npm test): ~12 s of writes at
// 400 events/s, the relay killed -9 every ~3 s. relay-kill.fault.ts is the minute-long variant.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test(
  'relay kill -9 every ~3 s under load: 0 lost, 0 reordered, 0 double-applied',
  () => relayKillScenario(db, children, { scenario: 'relay-kill-9-short', seconds: 12, ratePerSec: 400, killEveryMs: 3000 }),
  240_000,
);
