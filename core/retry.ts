import { isOutboxError, OutboxError } from './errors';

/**
 * The one retry policy of kafka-outbox, for the relay, the projector and the tools: which failures are
 * retried (`isRetriable`), and how long to wait before the next attempt (exponential backoff with
 * jitter). A retriable failure is never blamed on the data: the relay does not park the event, the
 * projector does not dead-letter it; both wait and try the same work again.
 */

/** How long to wait between attempts (exponential from `initialMs`, capped at `maxMs`, with jitter), and when to give up. */
export interface RetryPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  /** Give up after this many attempts (the last failure is thrown); default: never. */
  readonly maxAttempts?: number;
}

/**
 * The presets. Every wait starts at 100 ms and doubles; the caps differ only where the caller cannot
 * afford a long wait, for the reason written next to the preset.
 */
export const RETRY_POLICIES = {
  /**
   * The relay's loop and a service's start: outages of PostgreSQL, Kafka or the registry can last
   * minutes, so waits grow to 10 s (OUTBOX_LIVENESS_TIMEOUT must stay above this cap).
   */
  standard: { initialMs: 100, maxMs: 10_000 },
  /**
   * Inside a Kafka consumer's batch (the projector applying a batch, reading a checkpoint on assignment):
   * the consumer heartbeats only between attempts and holds the partition meanwhile, so the wait stays
   * well below the consumer session timeout (tests run the projector with sessions of a few seconds).
   */
  consumer: { initialMs: 100, maxMs: 5_000 },
  /**
   * Kafka metadata that settles within seconds (a topic just created whose leader is being elected, a
   * topic another process is about to create): short waits, so the start is not delayed; bounded where
   * the caller has its own retry.
   */
  metadata: { initialMs: 100, maxMs: 2_000 },
} as const satisfies Record<string, RetryPolicy>;

/** Backoff of the first retry and the cap (the standard policy). */
export const RETRY_POLICY = RETRY_POLICIES.standard;

/**
 * SQLSTATE classes that mean "PostgreSQL could not do it now" rather than "PostgreSQL refuses this":
 * 08 connection exception, 40 transaction rollback (serialization failure, deadlock), 53 insufficient
 * resources (disk full, out of memory, too many connections), 55 object not in prerequisite state
 * (lock not available), 57 operator intervention (statement timeout, query canceled, admin shutdown),
 * 58 system error (I/O error).
 */
const RETRIABLE_SQLSTATE_CLASSES = new Set(['08', '40', '53', '55', '57', '58']);

/** Socket errors of Node.js (a server that is down or unreachable). */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'ECONNABORTED']);

/** node-postgres failures that carry no SQLSTATE: the connection went away. */
const PG_CONNECTION_LOST = /Connection terminated|connection timeout|Client has encountered a connection error|terminating connection|not queryable|Connection ended/i;

/** Kafka protocol errors that will fail the same way however often they are retried. */
const NON_RETRIABLE_KAFKA = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'CORRUPT_MESSAGE',
  'INVALID_REQUIRED_ACKS',
  'PRODUCER_FENCED',
  'INVALID_PRODUCER_EPOCH',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
]);

/** Whether a PostgreSQL error (by SQLSTATE, or a lost connection) is worth retrying. */
export function isRetriablePgError(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) return RETRIABLE_SQLSTATE_CLASSES.has(code.slice(0, 2));
  if (code !== undefined && NETWORK_CODES.has(code)) return true;
  return PG_CONNECTION_LOST.test(String(e?.message ?? ''));
}

/** The Kafka protocol error type of a kafkajs error or of one it wraps (undefined if none). */
export function kafkaErrorType(err: unknown): string | undefined {
  for (let e = err as { type?: unknown; cause?: unknown; originalError?: unknown } | undefined, depth = 0; e && depth < 5; depth++) {
    if (typeof e.type === 'string') return e.type;
    e = (e.cause ?? e.originalError) as typeof e;
  }
  return undefined;
}

/**
 * Whether trying the same work again later can succeed: an OutboxError answers itself (its code);
 * PostgreSQL errors by SQLSTATE class; socket errors and lost connections yes; kafkajs errors yes,
 * except protocol errors that no retry can fix (a record too large, a fenced producer). Anything else
 * (a handler's own exception, a bug) is not retriable.
 */
export function isRetriable(err: unknown): boolean {
  if (isOutboxError(err)) return err.retriable;
  const name = (err as { name?: unknown } | null | undefined)?.name;
  if (typeof name === 'string' && name.startsWith('KafkaJS')) {
    const type = kafkaErrorType(err);
    return type === undefined || !NON_RETRIABLE_KAFKA.has(type);
  }
  return isRetriablePgError(err);
}

/** Delay before retry number `attempt` (1, 2, ...): exponential from `initialMs`, capped at `maxMs`, with jitter (half to full). */
export function backoffDelay(attempt: number, options: { initialMs?: number; maxMs?: number; random?: () => number } = {}): number {
  const initialMs = options.initialMs ?? RETRY_POLICY.initialMs;
  const maxMs = options.maxMs ?? RETRY_POLICY.maxMs;
  const random = options.random ?? Math.random;
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Exponential backoff with jitter that counts its own failures (see backoffDelay). */
export interface Backoff {
  /** Delay before the next attempt (and count the failure). */
  next(): number;
  reset(): void;
  readonly failures: number;
}

export function createBackoff(options: { initialMs?: number; maxMs?: number; random?: () => number } = {}): Backoff {
  let failures = 0;
  return {
    next() {
      failures += 1;
      return backoffDelay(failures, options);
    },
    reset() {
      failures = 0;
    },
    get failures() {
      return failures;
    },
  };
}

/** A failed attempt that will be tried again after `delayMs` (for the caller's log line). */
export interface RetryFailure {
  err: unknown;
  /** Failed attempts so far (1 on the first failure). */
  attempt: number;
  delayMs: number;
  /** isRetriable(err): a known transient failure (a warning), or not (an error worth a look). */
  retriable: boolean;
}

export interface RetryOptions {
  /** Default RETRY_POLICIES.standard. */
  policy?: RetryPolicy;
  /** Which failures are tried again (default isRetriable); the others are thrown at once. */
  retryIf?: (err: unknown) => boolean;
  /** Called before each wait: log the failure here (each caller keeps its own line). */
  onRetry?: (failure: RetryFailure) => void;
  /** Stops retrying: the wait ends early and retry rejects with OutboxError('SHUTDOWN'). */
  signal?: AbortSignal;
  /** Checked before every attempt, the first included: true stops as `signal` does (a consumer's batch gone stale). */
  cancelled?: () => boolean;
  random?: () => number;
}

/**
 * The one retry loop: run `attempt` (given its number, 1, 2, ...) until it succeeds; a failure that
 * `retryIf` accepts is tried again after the policy's backoff, any other failure (or the last one the
 * policy allows) is thrown as it is. Stopping (`signal`, `cancelled`) rejects with OutboxError('SHUTDOWN')
 * whose cause is the last failure, if any.
 */
export async function retry<T>(attempt: (n: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const policy: RetryPolicy = options.policy ?? RETRY_POLICIES.standard;
  const retryIf = options.retryIf ?? isRetriable;
  const backoff = createBackoff({ initialMs: policy.initialMs, maxMs: policy.maxMs, ...(options.random ? { random: options.random } : {}) });
  let last: unknown;
  for (let n = 1; ; n++) {
    if (options.signal?.aborted || options.cancelled?.()) {
      throw new OutboxError('SHUTDOWN', 'stopped while retrying', last === undefined ? {} : { cause: last });
    }
    try {
      return await attempt(n);
    } catch (err) {
      if (!retryIf(err) || (policy.maxAttempts !== undefined && n >= policy.maxAttempts)) throw err;
      last = err;
      const delayMs = backoff.next();
      options.onRetry?.({ err, attempt: n, delayMs, retriable: isRetriable(err) });
      await sleep(delayMs, options.signal);
    }
  }
}

/** Resolve after `ms`, or earlier when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
