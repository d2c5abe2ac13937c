import { ConfigResourceTypes, type Admin } from 'kafkajs';
import type { RelaySettings } from './config';
import { OutboxError } from './errors';
import type { Logger } from './logger';

/** Characters Kafka does not allow in topic names are replaced by `_`. */
function topicSafe(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * The topic of an aggregate type, as the relay publishes it and the projector reads it:
 * OUTBOX_TOPIC_MAP first, else OUTBOX_TOPIC_TEMPLATE with `{aggregate_type}` replaced, else
 * `<aggregate_type><OUTBOX_TOPIC_SUFFIX>` (default `user` → `user.events`), with characters Kafka does
 * not allow in topic names replaced by `_`.
 */
export function topicFor(aggregateType: string, settings: Pick<RelaySettings, 'topicMap' | 'topicSuffix' | 'topicTemplate'>): string {
  const mapped = settings.topicMap[aggregateType];
  if (mapped !== undefined) return mapped;
  if (settings.topicTemplate !== undefined) return topicSafe(settings.topicTemplate.replace(/\{aggregate_type\}/g, aggregateType));
  return `${topicSafe(aggregateType)}${settings.topicSuffix}`;
}

/** Replication of the topics kafka-outbox creates: event topics, dead-letter topics. */
export interface TopicReplication {
  replicationFactor: number;
  minInsyncReplicas: number;
}

/** Set by OUTBOX_TOPIC_REPLICATION_FACTOR / OUTBOX_TOPIC_MIN_INSYNC_REPLICAS; unset: from the cluster. */
export interface ReplicationSettings {
  topicReplicationFactor?: number;
  topicMinInsyncReplicas?: number;
}

/**
 * The replication to create topics with: the configured replication factor, or min(3, brokers in the
 * cluster); min.insync.replicas as configured, or one less than the replication factor (at least 1).
 * A replication factor above the broker count, or a min.insync.replicas above the replication factor,
 * would make every write fail: refused with an error naming the setting.
 */
export async function resolveReplication(admin: Admin, settings: ReplicationSettings): Promise<TopicReplication> {
  const brokers = (await admin.describeCluster()).brokers.length;
  const replicationFactor = settings.topicReplicationFactor ?? Math.max(1, Math.min(3, brokers));
  if (replicationFactor > brokers) {
    throw new OutboxError('CONFIG_INVALID', `OUTBOX_TOPIC_REPLICATION_FACTOR is ${replicationFactor} but the cluster has ${brokers} broker(s)`, {
      details: { variable: 'OUTBOX_TOPIC_REPLICATION_FACTOR' },
    });
  }
  const minInsyncReplicas = settings.topicMinInsyncReplicas ?? Math.max(1, replicationFactor - 1);
  if (minInsyncReplicas > replicationFactor) {
    throw new OutboxError('CONFIG_INVALID', `OUTBOX_TOPIC_MIN_INSYNC_REPLICAS is ${minInsyncReplicas}, above the replication factor ${replicationFactor}: every write would fail`, {
      details: { variable: 'OUTBOX_TOPIC_MIN_INSYNC_REPLICAS' },
    });
  }
  return { replicationFactor, minInsyncReplicas };
}

/** The topic-level config entry that carries min.insync.replicas. */
export function replicationConfigEntries(r: TopicReplication): Array<{ name: string; value: string }> {
  return [{ name: 'min.insync.replicas', value: String(r.minInsyncReplicas) }];
}

/** An existing topic whose replication differs from what kafka-outbox would create it with. */
export interface ReplicationMismatch {
  topic: string;
  replicationFactor: number;
  minInsyncReplicas: number | undefined;
  expected: TopicReplication;
}

/**
 * Existing topics whose replication factor or min.insync.replicas differ from `expected` (reported at
 * start-up, never silently used).
 */
export async function replicationMismatches(admin: Admin, topics: string[], expected: TopicReplication): Promise<ReplicationMismatch[]> {
  if (topics.length === 0) return [];
  const meta = await admin.fetchTopicMetadata({ topics });
  const configs = await admin.describeConfigs({
    includeSynonyms: false,
    resources: topics.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['min.insync.replicas'] })),
  });
  const minIsr = new Map<string, number | undefined>();
  for (const r of configs.resources) {
    const v = r.configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue;
    minIsr.set(r.resourceName, v === undefined ? undefined : Number(v));
  }
  const out: ReplicationMismatch[] = [];
  for (const t of meta.topics) {
    const replicationFactor = Math.min(...t.partitions.map((p) => p.replicas.length));
    const m = minIsr.get(t.name);
    if (replicationFactor !== expected.replicationFactor || (m !== undefined && m !== expected.minInsyncReplicas)) {
      out.push({ topic: t.name, replicationFactor, minInsyncReplicas: m, expected });
    }
  }
  return out;
}

/** One log line per mismatching topic, at warn: what it has, what was expected, which settings decide. */
export function reportReplicationMismatches(logger: Logger, mismatches: ReplicationMismatch[]): void {
  for (const m of mismatches) {
    logger.warn(
      { topic: m.topic, replicationFactor: m.replicationFactor, minInsyncReplicas: m.minInsyncReplicas, expected: m.expected },
      `topic ${m.topic} exists with replication factor ${m.replicationFactor} and min.insync.replicas ${m.minInsyncReplicas ?? 'the broker default'}, not ${m.expected.replicationFactor} and ${m.expected.minInsyncReplicas} (OUTBOX_TOPIC_REPLICATION_FACTOR, OUTBOX_TOPIC_MIN_INSYNC_REPLICAS): it is used as it is; change it with kafka-topics / kafka-reassign-partitions, or set the options to match`,
    );
  }
}
