import { crashComparison, lossTable } from '../../bench/dual-write';
import type { TestDatabase } from '../support/isolation';
import { uniqueName } from '../support/isolation';
import { printFigures } from '../support/ledger-verifier';
import type { Child } from '../support/processes';
import { kafkaOf, scenarioEnv } from './support';

/**
 * The dual-write baseline scenario: the same workload — change a user's email — written (a) as UPDATE,
 * COMMIT, then producer.send (no outbox) and (b) with kafka-outbox, both in child processes killed -9 at
 * the same moments (writers and relay). Busy writers (1,500 changes/s offered over 8 connections), so
 * every kill lands while several dual writes are between their COMMIT and the broker's ack and the
 * baseline's loss does not depend on luck. Prints the figures and the side-by-side table.
 */
export async function runDualWriteScenario(
  db: TestDatabase,
  track: (c: Child) => void,
  options: { label: string; seconds: number; kills: number },
): ReturnType<typeof crashComparison> {
  const outboxTopic = uniqueName('dwo');
  const env = scenarioEnv(db.url, outboxTopic);
  const r = await crashComparison({
    databaseUrl: db.url,
    pool: db.pool,
    env,
    kafka: kafkaOf(env),
    dualWriteTopic: uniqueName('dw'),
    outboxTopic,
    seconds: options.seconds,
    kills: options.kills,
    concurrency: 8,
    ratePerSec: 1500,
    track,
  });
  printFigures(options.label, r.dualWrite);
  printFigures(options.label, r.outbox);
  process.stdout.write(`${lossTable(r)}\n`);
  return r;
}
