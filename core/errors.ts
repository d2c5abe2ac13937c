/**
 * The one error class of kafka-outbox. Every failure that leaves a component carries a code from this
 * closed union and, where there was one, the underlying error as `cause`.
 *
 * Expected outcomes (a version conflict, a duplicate delivery) are never errors: they are returned values.
 */
export type OutboxErrorCode =
  | 'CONFIG_INVALID' // an environment variable or option is missing or malformed
  | 'DB_UNAVAILABLE' // PostgreSQL could not be reached or dropped the connection
  | 'DB_BUSY' // PostgreSQL could not do it now (lock or statement timeout, deadlock, serialization failure, out of resources)
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
  | 'ALREADY_RUNNING' // the same work is already running elsewhere (a second rebuild of one projection)
  | 'USAGE' // a CLI was called with bad flags or arguments
  | 'SHUTDOWN' // the component is stopping
  | 'FENCED' // another instance took over this component's work (lost lock, fenced producer): step down
  | 'INTERNAL'; // a bug: an invariant did not hold

/** Codes of failures that go away by themselves: the operation is retried later, unchanged. */
const RETRIABLE_CODES: ReadonlySet<OutboxErrorCode> = new Set<OutboxErrorCode>(['DB_UNAVAILABLE', 'DB_BUSY', 'KAFKA_UNAVAILABLE', 'REGISTRY_UNAVAILABLE', 'SHUTDOWN']);

export class OutboxError extends Error {
  override readonly name = 'OutboxError';
  readonly code: OutboxErrorCode;
  readonly details: Readonly<Record<string, unknown>>;
  /**
   * Whether trying the same operation again later can succeed (a server outage, a lock timeout), as
   * opposed to a failure of the input or the code (a payload that does not fit, a bug). Decided by the
   * code; core/retry.ts `isRetriable` asks this for every OutboxError.
   */
  readonly retriable: boolean;

  constructor(code: OutboxErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
    this.retriable = RETRIABLE_CODES.has(code);
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
