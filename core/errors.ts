/**
 * The one error class of kafka-outbox. Every failure that leaves a component carries a code from this
 * closed union and, where there was one, the underlying error as `cause`.
 *
 * Expected outcomes (a version conflict, a duplicate delivery) are never errors: they are returned values.
 */
export type OutboxErrorCode =
  | 'CONFIG_INVALID' // an environment variable or option is missing or malformed
  | 'DB_UNAVAILABLE' // PostgreSQL could not be reached or dropped the connection
  | 'DB_REJECTED' // PostgreSQL refused a statement (constraint, trigger, permission)
  | 'KAFKA_UNAVAILABLE' // the brokers could not be reached or did not acknowledge
  | 'REGISTRY_UNAVAILABLE' // the schema registry could not be reached
  | 'SCHEMA_UNKNOWN' // no local schema for an (event_type, schema_version)
  | 'SCHEMA_INCOMPATIBLE' // a schema change breaks the configured compatibility
  | 'PAYLOAD_INVALID' // a payload does not fit its schema
  | 'DECODE_FAILED' // a Kafka message could not be decoded
  | 'CHAIN_BROKEN' // a hash-chain link does not verify
  | 'MIGRATION_FAILED' // a migration could not be applied
  | 'NOT_FOUND' // a named thing (projection, aggregate, parked event) does not exist
  | 'USAGE' // a CLI was called with bad flags or arguments
  | 'SHUTDOWN' // the component is stopping
  | 'INTERNAL'; // a bug: an invariant did not hold

export class OutboxError extends Error {
  override readonly name = 'OutboxError';
  readonly code: OutboxErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: OutboxErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }
}

export function isOutboxError(err: unknown, code?: OutboxErrorCode): err is OutboxError {
  return err instanceof OutboxError && (code === undefined || err.code === code);
}

/** Message of any thrown value, for logs and wrapping. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
