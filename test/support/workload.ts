import type pg from 'pg';
import { appendEvents, withTransaction, type NewEvent } from '../../writer';

/**
 * A users-service workload: `writers` concurrent connections append `total` UserEmailChanged events
 * over `aggregates` aggregates, `perTx` events per transaction, through the TypeScript append API.
 * Optionally paced (events per second across all writers). Returns the number written.
 */
export async function writeWorkload(
  pool: pg.Pool,
  options: { writers: number; total: number; aggregates: number; perTx?: number; ratePerSec?: number; aggregatePrefix?: string; signal?: AbortSignal },
): Promise<number> {
  const perTx = options.perTx ?? 1;
  const prefix = options.aggregatePrefix ?? 'u';
  let next = 0;
  let written = 0;
  const started = Date.now();
  async function writer(w: number): Promise<void> {
    for (;;) {
      if (options.signal?.aborted) return;
      const start = next;
      if (start >= options.total) return;
      next = Math.min(options.total, start + perTx);
      const events: NewEvent[] = [];
      for (let i = start; i < next; i++) {
        events.push({
          aggregateType: 'user',
          aggregateId: `${prefix}${(i * 7919 + w) % options.aggregates}`,
          eventType: 'UserEmailChanged',
          schemaVersion: 1,
          payload: { email: `user${i}@example.com` },
          actorId: `writer:${w}`,
          traceId: `${i.toString(16).padStart(32, '0')}`,
          correlationId: `req-${i}`,
        });
      }
      await withTransaction(pool, (client) => appendEvents(client, events));
      written += events.length;
      if (options.ratePerSec) {
        const due = started + (written / options.ratePerSec) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    }
  }
  await Promise.all(Array.from({ length: options.writers }, (_, w) => writer(w)));
  return written;
}
