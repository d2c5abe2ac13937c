import { startRelay } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { privateStack, waitDead, type PrivateStack } from '../support/private-stack';
import { writeWorkload } from '../support/workload';
import { inProcessProjector, kafkaOf, logger, scenarioConfig, scenarioEnv, seedUsers, sleep, verifyAndPrint, ZERO, ZERO_EXCEPT_COPIES } from './support';

// Proof-suite scenarios "registry outage", "broker kill -9" and "broker SIGSTOP longer than the request
// timeout", on a PRIVATE Kafka + registry (never the shared stack), with the relay and the projector
// running against them under load. test/relay/outages.test.ts proves the relay alone against the topic;
// here each outage is its own run, verified end to end (topic + read models).
const db = useTestDatabase({ poolSize: 10 });
let ps: PrivateStack;

beforeAll(async () => {
  ps = await privateStack(uniqueName('faults'));
  const up = await ps.stack('up');
  if (up.code !== 0) throw new Error(`private stack did not start:\n${up.out}`);
}, 240_000);
afterAll(() => ps.destroy((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed === true), 120_000);

/**
 * Relay + projector on the private stack, writers at `rate` for `seconds`, `fault` injected meanwhile.
 * The fault must be seen while it lasts (from its start until `fault` returns): `landed` 'encode' or
 * 'publish' = the relay reports failures of that stage; 'stall' = the relay gets no acknowledgement at
 * all (a frozen broker: kafkajs may retry inside one send, so no failure need surface). `copies`:
 * whether the fault can make the relay publish an event twice (a publish that timed out but reached the
 * broker is sent again by a new producer).
 */
async function underLoad(
  scenario: string,
  prefix: string,
  fault: (startNow: () => Promise<void>) => Promise<Record<string, unknown>>,
  options: { startDuringFault?: boolean; landed: 'encode' | 'publish' | 'stall'; copies: boolean },
): Promise<void> {
  const topic = uniqueName(prefix);
  const env = { ...scenarioEnv(db.url, topic), ...ps.urls(), DATABASE_URL: db.url, KAFKA_REQUEST_TIMEOUT_MS: '5000', KAFKA_CONNECTION_TIMEOUT_MS: '1000' };
  const aggregates = 100;
  const before = (await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox')).rows[0]!.n;
  await seedUsers(db.pool, aggregates, `${prefix}-`);
  const failures: string[] = [];
  const failedAt: Array<{ stage: string; at: number }> = [];
  const publishedAt: number[] = [];
  const start = async (): Promise<{ stop(): Promise<void> }> => {
    const relay = startRelay({
      config: scenarioConfig(env),
      logger,
      observer: {
        published: () => void publishedAt.push(Date.now()),
        failed: (stage) => {
          failures.push(stage);
          failedAt.push({ stage, at: Date.now() });
        },
      },
    });
    const projector = await inProcessProjector(env, uniqueName('g'));
    return { stop: async () => void (await Promise.all([projector.stop(), relay.stop()])) };
  };
  let running = options.startDuringFault ? undefined : await start();
  try {
    const total = 6_000;
    const writing = writeWorkload(db.pool, { writers: 2, total, aggregates, perTx: 4, ratePerSec: 300, aggregatePrefix: `${prefix}-` });
    await sleep(3000);
    const faultFrom = Date.now();
    const faultFigures = await fault(async () => {
      running = await start();
    });
    const faultUntil = Date.now();
    const publishedBefore = publishedAt.filter((t) => t < faultFrom).length;
    // Acknowledgements while the fault lasted (after a second's grace for one already on the wire).
    const publishedDuring = publishedAt.filter((t) => t >= faultFrom + 1000 && t <= faultUntil).length;
    const failuresDuring = options.landed === 'stall' ? 0 : failedAt.filter((f) => f.stage === options.landed && f.at >= faultFrom && f.at <= faultUntil).length;
    expect(await writing).toBe(total);
    const report = await verifyAndPrint(
      scenario,
      db.pool,
      kafkaOf(env),
      [topic],
      { projections: true, where: `aggregate_id LIKE '${prefix}-%'` },
      {
        ...faultFigures,
        relay_failures_by_stage: failures.reduce<Record<string, number>>((m, f) => ({ ...m, [f]: (m[f] ?? 0) + 1 }), {}),
        ...(options.landed === 'stall' ? {} : { [`relay_${options.landed}_failures_during_fault`]: failuresDuring }),
        relay_publications_before_fault: publishedBefore,
        relay_publications_during_fault: publishedDuring,
        rows_before: Number(before),
      },
    );
    expect(report).toMatchObject({ committed: total + aggregates, ...(options.copies ? ZERO_EXCEPT_COPIES : ZERO) });
    // The outage was really met by the relay: failures of the expected stage, or (frozen broker) a relay
    // that was publishing before and got no acknowledgement while the broker was stopped.
    if (options.landed === 'stall') expect({ publishedBefore: publishedBefore > 0, publishedDuring }).toEqual({ publishedBefore: true, publishedDuring: 0 });
    else expect(failuresDuring).toBeGreaterThan(0);
  } finally {
    await running?.stop();
  }
}

test(
  'registry down 12 s (relay and projector started during the outage): 0 lost, 0 reordered, 0 double-applied',
  () =>
    underLoad(
      'registry-outage',
      'reg',
      async (startNow) => {
        const pid = ps.pidOf('registry');
        process.kill(pid, 'SIGKILL');
        await waitDead(pid);
        await startNow(); // the relay must register its schemas and waits for the registry
        await sleep(12_000);
        expect((await ps.stack('up')).code).toBe(0);
        return { registry_down_s: 12, relay_started_while_down: true };
      },
      { startDuringFault: true, landed: 'encode', copies: false },
    ),
  300_000,
);

test(
  'broker kill -9, restarted after 5 s: 0 lost, 0 reordered, 0 double-applied',
  () =>
    underLoad(
      'broker-kill-9',
      'bk',
      async () => {
        const pid = ps.pidOf('kafka');
        process.kill(pid, 'SIGKILL');
        await waitDead(pid);
        await sleep(5000);
        expect((await ps.stack('up')).code).toBe(0);
        return { broker_down_s: 5 };
      },
      { landed: 'publish', copies: true },
    ),
  300_000,
);

test(
  'broker SIGSTOP for 12 s (request timeout 5 s): 0 lost, 0 reordered, 0 double-applied',
  () =>
    underLoad(
      'broker-sigstop',
      'bs',
      async () => {
        const pid = ps.pidOf('kafka');
        process.kill(pid, 'SIGSTOP');
        await sleep(12_000);
        process.kill(pid, 'SIGCONT');
        return { broker_frozen_s: 12, request_timeout_ms: 5000 };
      },
      { landed: 'stall', copies: true },
    ),
  300_000,
);
