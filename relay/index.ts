import type { Kafka } from 'kafkajs';
import type { OutboxConfig } from '../core/config';
import { createKafka } from '../core/kafka';
import type { Logger } from '../core/logger';
import { loadCatalog, type SchemaCatalog } from '../schemas/catalog';
import { createEventEncoder } from '../schemas/encode-event';
import { registerSchemas } from '../schemas/register-schemas';
import type { EventEncoderPort } from './encode-batch';
import { topicFor } from '../core/topics';
import { runRelay, type RelayHandle, type RelayObserver } from './run-relay';

export type { RelayHandle, RelayObserver } from './run-relay';
export type { EventEncoderPort } from './encode-batch';
export { topicFor } from '../core/topics';

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
  const encoder = options.encoder ?? registeringEncoder(config, catalog, logger);
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
