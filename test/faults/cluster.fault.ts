import { createMetrics, METRIC_NAMES } from '../../core/metrics';
import { runOutbox } from '../cli/run-outbox';
import { BROKERS, leaderKill, useCluster } from './cluster';
import { deliveredCount, sleep } from './support';

// Fault scenarios on a replicated cluster (see cluster.ts): a private stack of three brokers, the relay
// and the projector under a steady write load while brokers are killed, restarted, frozen or taken away
// two at a time. cluster-leader-kill.test.ts is the short leader kill that npm test runs.
const cluster = useCluster();
const { db } = cluster;

test(
  '3 brokers: kill -9 of the leader of most partitions under load, restarted after 10 s: 0 lost, 0 reordered, 0 double-applied',
  () => cluster.underLoad('cluster-leader-kill-9', 'lk', leaderKill(cluster)),
  600_000,
);

test(
  '3 brokers: rolling restart (SIGTERM, start, next) under load: 0 lost, 0 reordered, 0 double-applied',
  () =>
    cluster.underLoad('cluster-rolling-restart', 'rr', async () => {
      const deliveredAt: number[] = [];
      for (let id = 1; id <= BROKERS; id++) {
        deliveredAt.push(await deliveredCount(db.pool));
        await cluster.killBroker(id, 'SIGTERM');
        await cluster.restartMissing();
        await sleep(3000);
      }
      deliveredAt.push(await deliveredCount(db.pool));
      // Delivery went on through each broker's restart.
      for (let i = 1; i < deliveredAt.length; i++) expect(deliveredAt[i]!).toBeGreaterThan(deliveredAt[i - 1]!);
      return { restarted: BROKERS, delivered_after_each: deliveredAt };
    }),
  900_000,
);

test(
  '3 brokers: one broker SIGSTOPped for 30 s (a zombie): 0 lost, 0 reordered, 0 double-applied',
  () =>
    cluster.underLoad('cluster-zombie-broker', 'zb', async ({ env, topic }) => {
      const { broker } = await cluster.busiestLeader(env, topic);
      const pid = cluster.brokerPid(broker);
      process.kill(pid, 'SIGSTOP');
      try {
        await sleep(30_000);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      return { frozen_broker: broker, frozen_s: 30 };
    }),
  600_000,
);

test(
  '3 brokers: two brokers down at once stall the relay (not enough replicas) without losing or marking anything, visible in /metrics and outbox status, then it resumes',
  () =>
    cluster.underLoad('cluster-two-down', 'td', async ({ env, failures }) => {
      // The relay's /metrics gauges read from PostgreSQL, as `outbox relay` serves them (default stall threshold).
      const metrics = createMetrics({ defaultMetrics: false, query: (sql, params) => db.pool.query(sql, params) });
      const gauge = async (name: string): Promise<number | undefined> => (await metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value;
      const status = async (): Promise<{ stalled?: boolean; pendingEvents?: number; lastDeliveryAgeSeconds?: number | null }> => {
        const r = await runOutbox(['status', '--json'], env, 60_000);
        return (JSON.parse(r.stdout) as { database: { stalled?: boolean; pendingEvents?: number; lastDeliveryAgeSeconds?: number | null } }).database;
      };
      expect(await gauge(METRIC_NAMES.relayStalled)).toBe(0);
      const failuresBefore = failures.length;
      await cluster.killBroker(2);
      await cluster.killBroker(3);
      const killedAt = Date.now();
      await sleep(5000); // in-flight requests settle
      const stalledAt = await deliveredCount(db.pool);
      await sleep(15_000);
      const stalledEnd = await deliveredCount(db.pool);
      // With one replica of three, min.insync.replicas=2 refuses every write: nothing may be marked delivered.
      expect(stalledEnd - stalledAt).toBe(0);
      expect(failures.length).toBeGreaterThan(failuresBefore); // the relay saw the stall
      // The stall shows once events have waited, and nothing was delivered, for longer than the threshold (30 s).
      let stalledGauge = await gauge(METRIC_NAMES.relayStalled);
      while (stalledGauge !== 1 && Date.now() - killedAt < 120_000) {
        await sleep(1000);
        stalledGauge = await gauge(METRIC_NAMES.relayStalled);
      }
      const stallVisibleAfterMs = Date.now() - killedAt;
      expect(stalledGauge).toBe(1);
      expect(await gauge(METRIC_NAMES.lastDeliveryAge)).toBeGreaterThan(30);
      const shown = await status();
      expect(shown).toMatchObject({ stalled: true, pendingEvents: expect.any(Number) });
      expect(shown.pendingEvents).toBeGreaterThan(0);
      expect(shown.lastDeliveryAgeSeconds).toBeGreaterThan(30);
      expect((await runOutbox(['status'], env, 60_000)).stdout).toMatch(/STALLED\s+\d+ event\(s\) waiting/);
      const marked = (await deliveredCount(db.pool)) - stalledAt;
      expect(marked).toBe(0);
      await cluster.restartMissing();
      const deadline = Date.now() + 120_000;
      while ((await deliveredCount(db.pool)) === stalledEnd && Date.now() < deadline) await sleep(500);
      expect(await deliveredCount(db.pool)).toBeGreaterThan(stalledEnd);
      // Delivering again clears the stall.
      while ((await gauge(METRIC_NAMES.relayStalled)) !== 0 && Date.now() < deadline) await sleep(500);
      expect(await gauge(METRIC_NAMES.relayStalled)).toBe(0);
      return {
        stalled_s: Math.round((Date.now() - killedAt) / 1000),
        marked_while_stalled: marked,
        relay_failures_during_stall: failures.length - failuresBefore,
        stall_visible_after_ms: stallVisibleAfterMs,
      };
    }),
  600_000,
);
