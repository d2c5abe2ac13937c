import { killHard, type Child } from '../support/processes';
import { pgCrashScenario } from './pg-crash';

// Proof-suite scenario "PostgreSQL immediate stop and restart", short variant (in npm test): a private
// PostgreSQL cluster (never the machine's server) stopped once with `pg_ctl stop -m immediate` under
// load, with the relay and the projector running as processes; see pg-crash.ts. pg-crash.fault.ts
// crashes it several times and once during a projection rebuild's swap.
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test(
  'PostgreSQL stopped -m immediate and restarted under load: 0 lost, 0 double-applied, no process exits',
  () => pgCrashScenario(children, { scenario: 'pg-immediate-restart-short', crashes: 1, downMs: 2000, ratePerSec: 300, steadyMs: 3000 }),
  300_000,
);
