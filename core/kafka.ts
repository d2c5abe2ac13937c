import { Kafka, logLevel as KafkaLogLevel, type LogEntry, type SASLOptions } from 'kafkajs';
import type { KafkaSettings } from './config';
import type { Logger } from './logger';

/**
 * A kafkajs client for the configured brokers (SASL/TLS as configured), logging through pino.
 * `options.retries` overrides the default of 5 (probes and one-shot CLI commands use 0 or 1 to fail fast).
 */
export function createKafka(settings: KafkaSettings, logger: Logger, clientIdSuffix?: string, options: { retries?: number } = {}): Kafka {
  const log = logger.child({ lib: 'kafkajs' });
  const sasl: SASLOptions | undefined = settings.sasl
    ? ({ mechanism: settings.sasl.mechanism, username: settings.sasl.username, password: settings.sasl.password } as SASLOptions)
    : undefined;
  return new Kafka({
    clientId: clientIdSuffix ? `${settings.clientId}-${clientIdSuffix}` : settings.clientId,
    brokers: settings.brokers,
    ssl: settings.ssl === false ? false : settings.ssl,
    ...(sasl ? { sasl } : {}),
    connectionTimeout: settings.connectionTimeoutMs,
    requestTimeout: settings.requestTimeoutMs,
    retry: { retries: options.retries ?? 5, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: KafkaLogLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...rest } = entry.log;
      const fields = { namespace: entry.namespace, ...rest };
      // kafka-outbox bounds each send's retries on purpose and retries whole batches itself
      // (at-least-once, duplicates carry the same event_id): this warning is expected.
      if (/Limiting retries for the idempotent producer/.test(message)) log.debug(fields, message);
      // One error response from a broker ("Response InitProducerId ...: the coordinator is loading"):
      // kafkajs retries it, and what finally fails reaches our code, which logs it at the right level.
      else if (entry.namespace === 'Connection' && /^Response /.test(message)) log.warn(fields, message);
      else if (entry.level <= KafkaLogLevel.ERROR) log.error(fields, message);
      else if (entry.level === KafkaLogLevel.WARN) log.warn(fields, message);
      else log.debug(fields, message);
    },
  });
}
