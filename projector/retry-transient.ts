import { isOutboxError } from '../core/errors';
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

/** Exponential backoff with jitter: 100 ms, 200 ms ... capped at `maxMs`. */
export function backoffMs(attempt: number, maxMs = 5000): number {
  const base = Math.min(maxMs, 100 * 2 ** Math.min(attempt, 16));
  return Math.round(base / 2 + Math.random() * (base / 2));
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
