import { Kafka, logLevel as KafkaLogLevel, type LogEntry, type SASLOptions } from 'kafkajs';
import type { KafkaSettings } from './config';
import type { Logger } from './logger';

/** A kafkajs client for the configured brokers (SASL/TLS as configured), logging through pino. */
export function createKafka(settings: KafkaSettings, logger: Logger, clientIdSuffix?: string): Kafka {
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
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 5000 },
    logLevel: KafkaLogLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...rest } = entry.log;
      const fields = { namespace: entry.namespace, ...rest };
      if (entry.level <= KafkaLogLevel.ERROR) log.error(fields, message);
      else if (entry.level === KafkaLogLevel.WARN) log.warn(fields, message);
      else log.debug(fields, message);
    },
  });
}
