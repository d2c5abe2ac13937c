import type { Kafka } from 'kafkajs';
import type { OutboxConfig } from '../core/config';
import { createKafka } from '../core/kafka';
import type { Logger } from '../core/logger';
import { loadCatalog, type SchemaCatalog } from '../schemas/catalog';
import { createEventEncoder } from '../schemas/encode-event';
import type { EventEncoderPort } from './encode-batch';
import { topicFor } from './route-topic';
import { runRelay, type RelayHandle, type RelayObserver } from './run-relay';

export type { RelayHandle, RelayObserver } from './run-relay';
export type { EventEncoderPort } from './encode-batch';
export { topicFor } from './route-topic';

export interface StartRelayOptions {
  config: OutboxConfig;
  logger: Logger;
  catalog?: SchemaCatalog;
  encoder?: EventEncoderPort;
  kafka?: Kafka;
  observer?: RelayObserver;
  standbyPollMs?: number;
  cleanIntervalMs?: number;
}

/**
 * Start a relay: the outbox → Kafka publishing loop (see run-relay.ts). Any number may run at once;
 * one is active, the others stand by. Returns at once; the loop retries every outage by itself.
 */
export function startRelay(options: StartRelayOptions): RelayHandle {
  const { config, logger } = options;
  const catalog = options.catalog ?? loadCatalog();
  const encoder = options.encoder ?? createEventEncoder({ registry: config.registry, catalog, logger: logger.child({ component: 'encoder' }) });
  const kafka = options.kafka ?? createKafka(config.kafka, logger, 'relay');
  const startupTopics = [...new Set(catalog.all().map((e) => topicFor(e.aggregateType, config.relay)))];
  return runRelay({
    config,
    logger,
    kafka,
    encoder,
    startupTopics,
    ...(options.observer ? { observer: options.observer } : {}),
    ...(options.standbyPollMs !== undefined ? { standbyPollMs: options.standbyPollMs } : {}),
    ...(options.cleanIntervalMs !== undefined ? { cleanIntervalMs: options.cleanIntervalMs } : {}),
  });
}
