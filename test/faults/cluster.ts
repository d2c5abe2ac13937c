import { ConfigResourceTypes } from 'kafkajs';
import { startRelay } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { privateStack, waitDead, type PrivateStack } from '../support/private-stack';
import { writeWorkload } from '../support/workload';
import { deliveredCount, inProcessProjector, kafkaOf, logger, scenarioConfig, scenarioEnv, seedUsers, sleep, verifyAndPrint, ZERO_EXCEPT_COPIES } from './support';

/**
 * Fault scenarios on a replicated cluster: a PRIVATE stack of three brokers beside a KRaft controller
 * (STACK_BROKERS=3: topics at replication factor 3, min.insync.replicas 2), with the relay and the
 * projector running under a steady write load while brokers are killed, restarted, frozen or taken away
 * two at a time. Each run is verified end to end: nothing lost, reordered or double-applied. A batch that
 * failed on some partitions is published again, so copies are allowed (and reported), but each must be
 * the same record as the first (divergent 0). Shared by cluster.fault.ts (every scenario) and
 * cluster-leader-kill.test.ts (the short leader kill in npm test).
 */
export const BROKERS = 3;

export interface FaultContext {
  env: NodeJS.ProcessEnv;
  topic: string;
  /** Relay loop failures by stage, in order. */
  failures: string[];
}
export type Fault = (ctx: FaultContext) => Promise<Record<string, unknown>>;

export interface Cluster {
  db: ReturnType<typeof useTestDatabase>;
  stack(): PrivateStack;
  brokerPid(id: number): number;
  killBroker(id: number, signal?: NodeJS.Signals): Promise<void>;
  /** `stack.sh up`: starts the servers that are not running. */
  restartMissing(): Promise<void>;
  busiestLeader(env: NodeJS.ProcessEnv, topic: string): Promise<{ broker: number; partitions: number }>;
  /** Relay + projector on the private cluster, writers at 300 ev/s (`total` events), `fault` injected meanwhile. */
  underLoad(scenario: string, prefix: string, fault: Fault, options?: { total?: number }): Promise<void>;
}

/** Register (at the top level of a test file) the file's database and its private three-broker stack. */
export function useCluster(): Cluster {
  const db = useTestDatabase({ poolSize: 10 });
  let ps: PrivateStack | undefined;
  beforeAll(async () => {
    // The registry is not faulted here: the test run's own one serves (one JVM less beside three brokers).
    ps = await privateStack(uniqueName('cluster'), { brokers: BROKERS, registry: 'shared' });
    const up = await ps.stack('up');
    if (up.code !== 0) throw new Error(`private 3-broker stack did not start:\n${up.out}`);
  }, 660_000);
  afterAll(() => ps?.destroy((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed === true), 180_000);
  const stack = (): PrivateStack => ps!;

  const brokerPid = (id: number): number => stack().pidOf(`kafka-broker-${id}`);
  async function killBroker(id: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const pid = brokerPid(id);
    process.kill(pid, signal);
    await waitDead(pid, 60_000);
  }
  async function restartMissing(): Promise<void> {
    const up = await stack().stack('up');
    expect({ code: up.code, out: up.code === 0 ? '' : up.out }).toEqual({ code: 0, out: '' });
  }

  /** The broker that leads most partitions of `topic` (the busiest under an even spread of aggregates). */
  async function busiestLeader(env: NodeJS.ProcessEnv, topic: string): Promise<{ broker: number; partitions: number }> {
    const admin = kafkaOf(env).admin();
    await admin.connect();
    try {
      const meta = await admin.fetchTopicMetadata({ topics: [topic] });
      const counts = new Map<number, number>();
      for (const p of meta.topics[0]?.partitions ?? []) counts.set(p.leader, (counts.get(p.leader) ?? 0) + 1);
      const [broker, partitions] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0] ?? [1, 0];
      return { broker, partitions };
    } finally {
      await admin.disconnect();
    }
  }

  /** Replicas per partition and min.insync.replicas of each topic, as the cluster reports them. */
  async function topicReplication(env: NodeJS.ProcessEnv, topics: string[]): Promise<Array<{ topic: string; replicas: number; minInsync: string | undefined }>> {
    const admin = kafkaOf(env).admin();
    await admin.connect();
    try {
      const meta = await admin.fetchTopicMetadata({ topics });
      const configs = await admin.describeConfigs({
        includeSynonyms: false,
        resources: topics.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['min.insync.replicas'] })),
      });
      return topics.map((topic) => ({
        topic,
        replicas: Math.min(...(meta.topics.find((t) => t.name === topic)?.partitions ?? []).map((p) => p.replicas.length)),
        minInsync: configs.resources.find((r) => r.resourceName === topic)?.configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue,
      }));
    } finally {
      await admin.disconnect();
    }
  }

  async function pendingCount(): Promise<number> {
    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL AND parked_at IS NULL');
    return Number(rows[0]!.n);
  }

  async function underLoad(scenario: string, prefix: string, fault: Fault, options: { total?: number } = {}): Promise<void> {
    const topic = uniqueName(prefix);
    const env = { ...scenarioEnv(db.url, topic), ...stack().urls(), DATABASE_URL: db.url, KAFKA_REQUEST_TIMEOUT_MS: '5000', KAFKA_CONNECTION_TIMEOUT_MS: '1000' };
    const aggregates = 100;
    // The database is shared by the file's scenarios: "delivered" below means delivered in this scenario
    // (counting all rows, a later scenario saw the earlier ones' deliveries, started its projector before
    // its relay had created the topic, and the projector's set-up created it at replication factor 1).
    const deliveredBefore = await deliveredCount(db.pool);
    const delivered = async (): Promise<number> => (await deliveredCount(db.pool)) - deliveredBefore;
    await seedUsers(db.pool, aggregates, `${prefix}-`);
    const failures: string[] = [];
    const relay = startRelay({ config: scenarioConfig(env), logger, observer: { failed: (stage) => failures.push(stage) } });
    // The relay creates the topic (publishing the seeded users) at the cluster's replication: min(3, brokers)
    // replicas and min.insync.replicas 2; the projector's dead-letter topic likewise.
    const createdBy = Date.now() + 120_000;
    while ((await delivered()) === 0 && Date.now() < createdBy) await sleep(250);
    const projector = await inProcessProjector(env, uniqueName('g')).catch(async (err: unknown) => {
      await relay.stop();
      throw err;
    });
    let writing: Promise<number> | undefined;
    try {
      expect(await topicReplication(env, [topic, `${topic}.dlq`])).toEqual([
        { topic, replicas: BROKERS, minInsync: '2' },
        { topic: `${topic}.dlq`, replicas: BROKERS, minInsync: '2' },
      ]);
      // A fixed number of events (`total`), or, by default, events written until the fault has ended, so
      // that every step of a long fault (a rolling restart on a busy machine takes minutes) meets a relay
      // with work to do.
      const stopWriting = new AbortController();
      writing = writeWorkload(db.pool, {
        writers: 2,
        total: options.total ?? 10_000_000,
        aggregates,
        perTx: 4,
        ratePerSec: 300,
        aggregatePrefix: `${prefix}-`,
        signal: stopWriting.signal,
      });
      // The load is flowing before the fault: the relay has published (a cold start on a fresh cluster
      // creates the topic first), and a few seconds of steady state follow.
      const flowingBy = Date.now() + 90_000;
      while ((await delivered()) === 0 && Date.now() < flowingBy) await sleep(250);
      expect(await delivered()).toBeGreaterThan(0);
      await sleep(3000);
      const figures = await fault({ env, topic, failures });
      if (options.total === undefined) stopWriting.abort();
      const total = await writing;
      if (options.total !== undefined) expect(total).toBe(options.total);
      const report = await verifyAndPrint(
        scenario,
        db.pool,
        kafkaOf(env),
        [topic],
        { projections: true, where: `aggregate_id LIKE '${prefix}-%'` },
        {
          ...figures,
          relay_failures_by_stage: failures.reduce<Record<string, number>>((m, f) => ({ ...m, [f]: (m[f] ?? 0) + 1 }), {}),
        },
      );
      expect(report).toMatchObject({ committed: total + aggregates, ...ZERO_EXCEPT_COPIES });
    } finally {
      // A failed scenario still lets its writers finish and its relay drain, so that its events do not turn
      // up on the next scenario's topic.
      await writing?.catch(() => undefined);
      const deadline = Date.now() + 120_000;
      while (Date.now() < deadline && (await pendingCount()) > 0) await sleep(500);
      await Promise.all([projector.stop(), relay.stop()]);
    }
  }

  return { db, stack, brokerPid, killBroker, restartMissing, busiestLeader, underLoad };
}

/**
 * kill -9 of the broker that leads most partitions of the topic; publishing must resume on the two
 * replicas left (once the controller moves leadership), then the broker is started again.
 */
export function leaderKill(c: Cluster): Fault {
  return async ({ env, topic }) => {
    const { broker, partitions } = await c.busiestLeader(env, topic);
    expect(partitions).toBeGreaterThan(0);
    const deliveredAtKill = await deliveredCount(c.db.pool);
    const killedAt = Date.now();
    await c.killBroker(broker);
    // Two replicas remain in sync: once the controller has moved leadership (after the dead broker's
    // session times out, broker.session.timeout.ms = 9 s by default), the relay publishes again while the
    // killed broker is still down.
    let resumedAfterMs: number | undefined;
    while (Date.now() - killedAt < 60_000) {
      if ((await deliveredCount(c.db.pool)) > deliveredAtKill + 50) {
        resumedAfterMs = Date.now() - killedAt;
        break;
      }
      await sleep(250);
    }
    expect(resumedAfterMs).toBeDefined();
    const deliveredWhileDown = (await deliveredCount(c.db.pool)) - deliveredAtKill;
    await c.restartMissing();
    return { killed_broker: broker, partitions_it_led: partitions, delivered_while_down: deliveredWhileDown, publishing_resumed_after_ms: resumedAfterMs };
  };
}
