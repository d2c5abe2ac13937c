import type { Gauge } from 'prom-client';
import { relayMetricsObserver } from '../../cli/commands/run';
import { createMetrics, METRIC_NAMES } from '../../core/metrics';

// outbox_relay_leader is 1 while an instance publishes: the single relay's leader, or a sharded relay
// (OUTBOX_RELAY_SHARDED) that owns at least one shard; so sum(outbox_relay_leader) == 0 means nothing
// is published, in either mode. outbox_relay_shards_owned counts a sharded instance's shards.
async function gauge(metrics: ReturnType<typeof createMetrics>, name: string): Promise<number | undefined> {
  return (await (metrics.registry.getSingleMetric(name) as Gauge).get()).values[0]?.value;
}

test('a single relay: outbox_relay_leader is 1 while it leads', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const observer = relayMetricsObserver(metrics);
  observer.leadership?.(true);
  expect(await gauge(metrics, METRIC_NAMES.relayLeader)).toBe(1);
  observer.leadership?.(false);
  expect(await gauge(metrics, METRIC_NAMES.relayLeader)).toBe(0);
});

test('a sharded relay: outbox_relay_leader is 1 only while it owns at least one shard', async () => {
  const metrics = createMetrics({ defaultMetrics: false });
  const observer = relayMetricsObserver(metrics, undefined, { sharded: true });
  const leader = (): Promise<number | undefined> => gauge(metrics, METRIC_NAMES.relayLeader);
  // Joined (a member), no shard yet: it publishes nothing.
  observer.shardsOwned?.(0);
  observer.leadership?.(true);
  expect(await leader()).toBe(0);
  observer.shardsOwned?.(8);
  expect(await leader()).toBe(1);
  expect(await gauge(metrics, METRIC_NAMES.relayShardsOwned)).toBe(8);
  // All handed over (more instances than shards, or a newcomer took them): a member, but not publishing.
  observer.shardsOwned?.(0);
  expect(await leader()).toBe(0);
  observer.shardsOwned?.(3);
  expect(await leader()).toBe(1);
  // Fenced or stopped: its shards go, and it is no member.
  observer.shardsOwned?.(0);
  observer.leadership?.(false);
  expect(await leader()).toBe(0);
  // The order the callbacks come in does not matter.
  observer.leadership?.(true);
  expect(await leader()).toBe(0);
  observer.shardsOwned?.(2);
  expect(await leader()).toBe(1);
  observer.leadership?.(false);
  expect(await leader()).toBe(0);
});
