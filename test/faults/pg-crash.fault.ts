import { killHard, type Child } from '../support/processes';
import { pgCrashScenario } from './pg-crash';

// Proof-suite scenario "PostgreSQL immediate stop and restart": a private PostgreSQL cluster (never the
// machine's server) stopped with `pg_ctl stop -m immediate` four times under load, down 2-5 s each
// time, then once more the moment a rebuild of the `users` projection starts its swap (the rebuild is
// run again after the restart); the relay and the projector run as processes. See pg-crash.ts.
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

test(
  'PostgreSQL stopped -m immediate four times under load, then during a rebuild swap: 0 lost, 0 double-applied, no process exits',
  () => pgCrashScenario(children, { scenario: 'pg-immediate-restart', crashes: 4, downMs: 4000, ratePerSec: 300, steadyMs: 5000, rebuildSwap: true }),
  600_000,
);
