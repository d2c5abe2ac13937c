import { useTestDatabase } from '../support/isolation';
import { killHard, type Child } from '../support/processes';
import { relayKillScenario } from './relay-kill';

// Proof-suite scenario "relay kill -9 every ~10 s under load": 60 s of writes at 400 events/s.
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test(
  'relay kill -9 every ~10 s for a minute under load: 0 lost, 0 reordered, 0 double-applied',
  () => relayKillScenario(db, children, { scenario: 'relay-kill-9', seconds: 60, ratePerSec: 400, killEveryMs: 10_000 }),
  400_000,
);
