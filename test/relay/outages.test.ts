import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { loadConfig } from '../../core/config';
import { startRelay } from '../../relay';
import { checkDelivery } from '../support/delivery-check';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { privateStack, waitDead, type PrivateStack } from '../support/private-stack';
import { relayEnv } from '../support/relay-env';
import { writeWorkload } from '../support/workload';

// Servers go away mid-run — on a private stack, so the shared one is untouched: the registry is
// stopped for 10 s (also while a relay starts), the broker is killed -9 and restarted 20 s later, and the broker
// is frozen (SIGSTOP) for longer than the request timeout. The relay backs off, recovers by itself,
// and the topic ends up with every committed event: 0 lost, 0 reordered.
const db = useTestDatabase({ poolSize: 10 });
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
let ps: PrivateStack;

beforeAll(async () => {
  ps = await privateStack(uniqueName('outage'));
  const up = await ps.stack('up');
  if (up.code !== 0) throw new Error(`private stack did not start:\n${up.out}`);
}, 180_000);
afterAll(() => ps.destroy((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed === true), 60_000);

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('registry down 10 s, broker kill -9 and restart 20 s later, broker frozen past the request timeout: 0 lost', async () => {
  const topic = uniqueName('outage');
  const config = loadConfig(
    { ...relayEnv(db.url, topic), ...ps.urls(), DATABASE_URL: db.url, KAFKA_REQUEST_TIMEOUT_MS: '5000', KAFKA_CONNECTION_TIMEOUT_MS: '1000' },
    { database: true, kafka: true, registry: true },
  );
  const failures: string[] = [];
  const relay = startRelay({ config, logger, observer: { failed: (stage) => failures.push(stage) } });
  const kafka = createKafka(config.kafka, logger);
  try {
    // Events are written all through the outages, until the broker is thawed: each outage happens while
    // the relay has work (on a busy machine a fixed-size workload could be all delivered before the broker
    // outage even began, and the relay then saw nothing fail).
    const stopWriting = new AbortController();
    const writing = writeWorkload(db.pool, { writers: 2, total: 10_000_000, aggregates: 100, perTx: 5, ratePerSec: 200, signal: stopWriting.signal });

    // 1. Registry stopped for 10 s mid-run (the running relay has its schema ids cached and keeps going).
    await pause(2000);
    const registryPid = ps.pidOf('registry');
    process.kill(registryPid, 'SIGKILL');
    await waitDead(registryPid);
    await pause(10_000);
    expect((await ps.stack('up')).code).toBe(0);

    // 2. Broker killed -9 and restarted after 20 s: longer than kafkajs's own retries of a send (5 retries,
    // at most 5 s apart), so the relay itself sees the publish fail (a shorter outage was sometimes absorbed
    // by those retries, and the relay saw nothing).
    const brokerPid = ps.pidOf('kafka');
    process.kill(brokerPid, 'SIGKILL');
    await waitDead(brokerPid);
    await pause(20_000);
    expect((await ps.stack('up')).code).toBe(0);
    await pause(3000);

    // 3. Broker frozen for longer than the request timeout (5 s), then thawed.
    const frozen = ps.pidOf('kafka');
    process.kill(frozen, 'SIGSTOP');
    await pause(8000);
    process.kill(frozen, 'SIGCONT');
    await pause(2000);
    stopWriting.abort();

    const written = await writing;
    expect(written).toBeGreaterThan(5_000); // ≥ 200 ev/s over the ~45 s of outages
    const report = await checkDelivery(db.pool, kafka, [topic], { timeoutMs: 120_000 });
    process.stdout.write(`outages: ${written} written; relay failures by stage ${JSON.stringify(countBy(failures))}; ${JSON.stringify(report)}\n`);
    expect(report).toMatchObject({ committed: written, lost: 0, reordered: 0, unexpected: 0, divergent: 0, malformed: 0 }); // a publish retried after a timeout may repeat, identically
    expect(failures.filter((f) => f === 'publish').length).toBeGreaterThan(0); // the outages were really seen
  } finally {
    await relay.stop();
  }
}, 300_000);

test('a relay started while the registry is down waits, then publishes once it is back', async () => {
  const topic = uniqueName('regdown');
  const config = loadConfig({ ...relayEnv(db.url, topic), ...ps.urls(), DATABASE_URL: db.url }, { database: true, kafka: true, registry: true });
  // Fresh subjects so the relay must reach the registry to start.
  const { loadCatalog } = await import('../../schemas/catalog');
  const catalog = loadCatalog(undefined, { namespace: uniqueName('regdown') });
  const registryPid = ps.pidOf('registry');
  process.kill(registryPid, 'SIGKILL');
  await waitDead(registryPid);
  const failures: string[] = [];
  const relay = startRelay({ config, logger, catalog, observer: { failed: (stage) => failures.push(stage) } });
  try {
    await writeWorkload(db.pool, { writers: 1, total: 50, aggregates: 5, aggregatePrefix: 'rd' });
    await pause(4000);
    expect(failures.filter((f) => f === 'encode').length).toBeGreaterThan(0);
    expect((await ps.stack('up')).code).toBe(0);
    const report = await checkDelivery(db.pool, createKafka(config.kafka, logger), [topic], { timeoutMs: 60_000, where: "aggregate_id LIKE 'rd%'" });
    expect(report).toMatchObject({ committed: 50, lost: 0, reordered: 0, unexpected: 0, duplicates: 0, divergent: 0, malformed: 0 });
  } finally {
    await relay.stop();
  }
}, 180_000);

function countBy(list: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of list) out[x] = (out[x] ?? 0) + 1;
  return out;
}
