import type { Kafka } from 'kafkajs';
import type { OutboxConfig } from '../core/config';
import { createKafka } from '../core/kafka';
import type { Logger } from '../core/logger';
import { loadCatalog, type SchemaCatalog } from '../schemas/catalog';
import { createEventEncoder } from '../schemas/encode-event';
import { registerSchemas } from '../schemas/register-schemas';
import type { EventEncoderPort } from './encode-batch';
import { topicFor } from '../core/topics';
import { runRelay, type LeadershipPort, type RelayHandle, type RelayObserver } from './run-relay';
import { Leadership } from './acquire-leadership';
import { DeliveryQueue } from './delivery-queue';
import { KafkaSink, relayTransactionalId, type Sink } from './kafka-sink';
import { ShardOwnership } from './own-shards';
import { SHARD_PRODUCER_RETRY, ShardedSink } from './sharded-sink';

export type { RelayHandle, RelayObserver, RelayParts, RelayStage } from './run-relay';
export type { EventEncoderPort } from './encode-batch';
export type { Sink, PublishOutcome } from './kafka-sink';
export { KafkaSink } from './kafka-sink';
export { readShardOwners, type ShardOwner, type ShardOwnersReport } from './own-shards';
export { topicFor } from '../core/topics';

/** A RelayObserver that also hears how many shards a sharded instance owns (OUTBOX_RELAY_SHARDED). */
export interface ShardedRelayObserver extends RelayObserver {
  /** The number of shards this instance claims from changed (0 when it is not a member). */
  shardsOwned?(count: number): void;
}

export interface StartRelayOptions {
  config: OutboxConfig;
  logger: Logger;
  /** The schema catalog whose aggregate types' topics are created at start-up (default: the packaged schemas). */
  catalog?: SchemaCatalog;
  encoder?: EventEncoderPort;
  kafka?: Kafka;
  /** Where events go (default: a KafkaSink for config.kafka; transactional when OUTBOX_RELAY_TRANSACTIONAL=true). */
  sink?: Sink;
  observer?: ShardedRelayObserver;
  standbyPollMs?: number;
  cleanIntervalMs?: number;
  /** How long the leader's lock check before each claim may take before it steps down (default 5 s). */
  leaderCheckTimeoutMs?: number;
  /** Wrap the sink the relay publishes through (tests record what is published when). */
  decorateSink?(sink: Sink): Sink;
}

/**
 * Start a relay: the outbox → Kafka publishing loop (see run-relay.ts), built from its parts: the
 * leadership lock, the delivery queue, the schema encoder and the Kafka sink. Any number may run at
 * once; one is active, the others stand by. With OUTBOX_RELAY_SHARDED all are active, each publishing
 * its share of the queue's shards (own-shards.ts in place of the leadership lock). Returns at once; the loop retries every outage by itself.
 */
export function startRelay(options: StartRelayOptions): RelayHandle {
  const { config, logger } = options;
  const settings = config.relay;
  const catalog = options.catalog ?? loadCatalog();
  const encoder = options.encoder ?? registeringEncoder(config, catalog, logger);
  const log = logger.child({ component: 'relay', instance: settings.instanceId });
  let kafka = options.kafka;
  let shardKafka = options.kafka;
  const kafkaSink = (transactionalId?: string, client?: Kafka): KafkaSink =>
    new KafkaSink({
      kafka: client ?? (kafka ??= createKafka(config.kafka, logger, 'relay')),
      logger: log,
      partitions: settings.topicPartitions,
      requestTimeoutMs: config.kafka.requestTimeoutMs,
      maxMessageBytes: settings.maxMessageBytes,
      transactional: settings.transactional,
      ...(transactionalId !== undefined ? { transactionalId } : {}),
      ...(settings.cloudEvents !== undefined ? { cloudEvents: settings.cloudEvents } : {}),
      replication: config.kafka,
    });
  const listeners: Array<() => void> = [];
  const lock = {
    databaseUrl: config.databaseUrl,
    schema: config.schema,
    logger: log,
    onNotify: () => listeners.forEach((l) => l()),
    ...(options.leaderCheckTimeoutMs !== undefined ? { checkTimeoutMs: options.leaderCheckTimeoutMs } : {}),
  };
  let sink: Sink;
  let leadership: LeadershipPort;
  let shards: (() => readonly number[]) | undefined;
  if (settings.sharded) {
    // Active-active: each instance publishes its share of the shards; transactional, a producer per shard.
    const sharded =
      options.sink === undefined && settings.transactional
        ? new ShardedSink(
            {
              sinkFor: ({ transactionalId }) => kafkaSink(transactionalId, (shardKafka ??= createKafka(config.kafka, logger, 'relay', SHARD_PRODUCER_RETRY))),
              baseTransactionalId: (outbox) => settings.transactionalId ?? relayTransactionalId(outbox),
            },
            () => ownership.shards,
          )
        : undefined;
    const ownership: ShardOwnership = new ShardOwnership({
      ...lock,
      instanceId: settings.instanceId,
      ...(settings.rebalanceIntervalMs !== undefined ? { rebalanceIntervalMs: settings.rebalanceIntervalMs } : {}),
      ...(options.observer?.shardsOwned ? { onOwned: (n: number) => options.observer?.shardsOwned?.(n) } : {}),
      ...(sharded ? { onAcquired: (s: number[]) => sharded.take(s), onReleased: (s: number[]) => sharded.drop(s) } : {}),
    });
    sink = options.sink ?? sharded ?? kafkaSink();
    leadership = ownership;
    shards = () => ownership.shards;
  } else {
    sink = options.sink ?? kafkaSink(settings.transactionalId);
    leadership = new Leadership(lock);
  }
  if (options.decorateSink) sink = options.decorateSink(sink);
  const queue = new DeliveryQueue({
    databaseUrl: config.databaseUrl,
    schema: config.schema,
    logger: log,
    batchSize: settings.batchSize,
    batchBytes: settings.batchBytes,
    ...(shards ? { shards } : {}),
  });
  const startupTopics = [...new Set(catalog.all().map((e) => topicFor(e.aggregateType, settings)))];
  return runRelay({
    parts: { leadership, queue, encoder, sink },
    settings,
    logger,
    startupTopics,
    wakeups: { subscribe: (wake) => listeners.push(wake) },
    onStopped: async () => {
      await sink.reset();
      await queue.close();
    },
    ...(options.observer ? { observer: options.observer } : {}),
    ...(options.standbyPollMs !== undefined ? { standbyPollMs: options.standbyPollMs } : {}),
    ...(options.cleanIntervalMs !== undefined ? { cleanIntervalMs: options.cleanIntervalMs } : {}),
  });
}

/**
 * The schema encoder, preceded at start-up by `registerSchemas` (what `outbox schemas register` does):
 * each subject gets its compatibility level and every local version is registered in order, so the
 * registry gates changes even when nobody ran the command. A version the registry refuses is logged;
 * events that need it are parked by the encoder with the registry's reason.
 */
function registeringEncoder(config: OutboxConfig, catalog: SchemaCatalog, logger: Logger): EventEncoderPort {
  const log = logger.child({ component: 'encoder' });
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger: log });
  return {
    async prepare() {
      const report = await registerSchemas({ registry: config.registry, catalog, logger: log });
      if (!report.ok && report.rejected) {
        const r = report.rejected;
        log.error({ subject: r.subject, version: r.version, problems: r.problems }, `the registry refused ${r.subject} v${r.version}: ${r.message}`);
      }
      await encoder.prepare();
    },
    encode: (event) => encoder.encode(event),
  };
}
