import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { checkDelivery } from '../support/delivery-check';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, spawnTs, type Child } from '../support/processes';
import { relayConfig, relayEnv } from '../support/relay-env';
import { writeWorkload } from '../support/workload';

// kill -9 of the relay five times at random moments while 20,000 events are written: nothing lost,
// nothing reordered; the duplicates (re-published after a kill) are counted and reported.
const db = useTestDatabase({ poolSize: 10 });
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
const children: Child[] = [];

afterAll(async () => {
  for (const c of children) await killHard(c);
});

test('kill -9 of the relay 5 times during a 20,000-event run: 0 lost, 0 reordered', async () => {
  const topic = uniqueName('kill');
  const env = relayEnv(db.url, topic, { OUTBOX_RELAY_BATCH_SIZE: '500' });
  const start = async (): Promise<Child> => {
    const c = spawnTs('test/support/relay-process.ts', env);
    children.push(c);
    await c.waitFor(/leader/);
    return c;
  };
  let relay = await start();
  const writing = writeWorkload(db.pool, { writers: 4, total: 20_000, aggregates: 300, perTx: 10, ratePerSec: 1_200 });
  let writesDone = false;
  void writing.finally(() => (writesDone = true)).catch(() => undefined);
  const kills: number[] = [];
  const delivered = async (): Promise<number> =>
    Number((await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NOT NULL')).rows[0]!.n);
  const pending = async (): Promise<number> =>
    Number((await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL')).rows[0]!.n);
  let before = 0;
  for (let k = 0; k < 5; k++) {
    await new Promise((r) => setTimeout(r, 500 + Math.random() * 1500));
    // Each kill must land on a relay at work: one that has delivered since the previous kill (a relay
    // still starting has nothing in flight), with committed events still waiting while writers write.
    const workingBy = Date.now() + 60_000;
    // Once the writers are done and the relay has caught up there is nothing left to interrupt.
    const working = async (): Promise<boolean> => {
      const [d, p] = [await delivered(), await pending()];
      return (writesDone && p === 0) || (d > before && (p > 0 || writesDone));
    };
    let atWork = await working();
    while (!atWork && Date.now() < workingBy) {
      await new Promise((r) => setTimeout(r, 100));
      atWork = await working();
    }
    expect(atWork).toBe(true);
    const at = await delivered();
    kills.push(at);
    before = at;
    await killHard(relay);
    relay = await start();
  }
  expect(await writing).toBe(20_000);
  const config = relayConfig(db.url, topic);
  const report = await checkDelivery(db.pool, createKafka(config.kafka, logger), [topic], { timeoutMs: 120_000 });
  process.stdout.write(`kill -9 x5 (delivered count at each kill: ${kills.join(', ')}): ${JSON.stringify(report)}\n`);
  expect(kills.length).toBe(5);
  expect(report).toMatchObject({ committed: 20_000, lost: 0, reordered: 0, unexpected: 0, divergent: 0, malformed: 0 }); // copies after a kill allowed, each identical to its first
  expect(report.duplicates).toBeLessThanOrEqual(kills.length * 500); // at most the claimed batch in flight at each kill
  await killHard(relay);
});
