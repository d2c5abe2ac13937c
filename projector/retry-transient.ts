import { isOutboxError } from '../core/errors';
import { backoffDelay } from '../core/backoff';
import { isTransientPgError } from '../core/pg';

/**
 * Transient failures are retried with backoff and never dead-lettered: PostgreSQL unreachable, the
 * registry unreachable, Kafka not acknowledging (DLQ produce), the projector stopping.
 */
export function isTransient(err: unknown): boolean {
  if (isOutboxError(err)) return ['DB_UNAVAILABLE', 'REGISTRY_UNAVAILABLE', 'KAFKA_UNAVAILABLE', 'SHUTDOWN'].includes(err.code);
  if (isTransientPgError(err)) return true;
  const e = err as { name?: string; retriable?: boolean; code?: string };
  if (typeof e?.name === 'string' && e.name.startsWith('KafkaJS')) return true;
  return false;
}

/** Backoff before retry `attempt` (0, 1, ...): 100 ms doubling, capped at `maxMs`, with jitter. */
export function backoffMs(attempt: number, maxMs = 5000): number {
  return backoffDelay(attempt + 1, 100, maxMs);
}

export { sleep } from '../core/backoff';
