import { Kafka, logLevel as KafkaLogLevel, type LogEntry, type SASLOptions } from 'kafkajs';
import type { KafkaSettings } from './config';
import type { Logger } from './logger';
import { installFastRecordEncoding } from './kafka-record-encoding';

let reportedEncoding = false;

/**
 * A kafkajs client for the configured brokers (SASL/TLS as configured), logging through pino.
 * `options.retries` overrides the default of 5 (probes and one-shot CLI commands use 0 or 1 to fail fast);
 * `initialRetryTimeMs` (default 200) and `maxRetryTimeMs` (default 5000) the back-off between them.
 * Its producers encode records without kafkajs's garbage (core/kafka-record-encoding.ts).
 */
export function createKafka(
  settings: KafkaSettings,
  logger: Logger,
  clientIdSuffix?: string,
  options: { retries?: number; initialRetryTimeMs?: number; maxRetryTimeMs?: number } = {},
): Kafka {
  const log = logger.child({ lib: 'kafkajs' });
  const encoding = installFastRecordEncoding();
  if (!encoding.installed && !reportedEncoding) {
    reportedEncoding = true;
    log.info({ reason: encoding.reason }, `kafkajs encodes records itself (slower): ${encoding.reason}`);
  }
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
    retry: { retries: options.retries ?? 5, initialRetryTime: options.initialRetryTimeMs ?? 200, maxRetryTime: options.maxRetryTimeMs ?? 5000 },
    logLevel: KafkaLogLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      const { message, ...rest } = entry.log;
      log[kafkaLogLevel(entry)]({ namespace: entry.namespace, ...rest }, message);
    },
  });
}

/** Broker answers kafkajs retries by itself that are part of a healthy cluster's life: a group or transaction coordinator starting up or moving. */
const ROUTINE_RESPONSE_ERRORS = /coordinator is loading|coordinator is not available|not the correct coordinator/i;

/**
 * The pino level of a kafkajs log entry. kafka-outbox bounds each send's retries on purpose and retries
 * whole batches itself, and what finally fails reaches our code, which logs it at the right level; so
 * kafkajs's own retried steps are not warnings when they are routine.
 */
export function kafkaLogLevel(entry: Pick<LogEntry, 'namespace' | 'level' | 'log'>): 'debug' | 'info' | 'warn' | 'error' {
  const { message, error } = entry.log as { message: string; error?: unknown };
  const errorText = String(error ?? '');
  // At-least-once by design (duplicates carry the same event_id): this warning is expected.
  if (/Limiting retries for the idempotent producer/.test(message)) return 'debug';
  // A transaction's first request right after the previous commit, while the coordinator still writes
  // that commit's markers (CONCURRENT_TRANSACTIONS): retried within milliseconds, expected.
  if (/concurrent operation on the same transaction/.test(message) || /concurrent operation on the same transaction/.test(errorText)) return 'debug';
  if (entry.namespace === 'Connection' && /^Response /.test(message)) {
    // A coordinator loading or moving (the first transaction or group on a fresh cluster, a broker
    // restart): kafkajs retries, and it is worth a line but not a warning.
    if (ROUTINE_RESPONSE_ERRORS.test(errorText)) return 'info';
    // Any other error response from a broker: kafkajs retries it; a warning in case it keeps coming.
    return 'warn';
  }
  if (entry.namespace === 'Consumer') {
    // A consumer crashing on a routine coordinator answer is restarted by kafkajs; the restart line
    // itself follows every crash, whose own line carries the level.
    if (/^Crash: /.test(message) && ROUTINE_RESPONSE_ERRORS.test(message)) return 'info';
    if (/^Restarting the consumer in /.test(message)) return 'info';
  }
  if (entry.level <= KafkaLogLevel.ERROR) return 'error';
  if (entry.level === KafkaLogLevel.WARN) return 'warn';
  return 'debug';
}

/**
 * The level of our own line about a consumer's CRASH event: kafkajs restarts the consumer when
 * `restart` is true, so that is a warning (info when the cause is a routine coordinator answer); a
 * crash for good is an error.
 */
export function consumerCrashLevel(payload: { error: unknown; restart: boolean }): 'info' | 'warn' | 'error' {
  if (!payload.restart) return 'error';
  return ROUTINE_RESPONSE_ERRORS.test(String((payload.error as { message?: unknown } | null)?.message ?? payload.error)) ? 'info' : 'warn';
}
