import type pg from 'pg';
import { ident } from '../core/pg';

/**
 * Park an event that cannot be encoded (unknown type/version, payload that does not fit its schema).
 * Its aggregate is held back behind it (claimBatch skips aggregates with a parked event) until
 * `outbox parked retry` or `skip` releases it; every other aggregate keeps flowing.
 */
export async function parkEvent(db: pg.ClientBase | pg.Pool, schema: string, id: string, reason: string): Promise<void> {
  await db.query(
    `UPDATE ${ident(schema)}.outbox_delivery
        SET parked_at = clock_timestamp(), park_reason = $2, attempts = attempts + 1
      WHERE id = $1 AND delivered_at IS NULL`,
    [id, reason],
  );
}
