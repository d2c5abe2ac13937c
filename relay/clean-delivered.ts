import type pg from 'pg';
import { ident } from '../core/pg';

/**
 * Delete delivery bookkeeping older than the retention (OUTBOX_DELIVERED_RETENTION), in chunks.
 * Only `outbox_delivery` rows of delivered events go; the history in `outbox` is permanent.
 */
export async function cleanDelivered(db: pg.Pool | pg.ClientBase, schema: string, retentionMs: number, chunk = 10_000): Promise<number> {
  const s = ident(schema);
  let total = 0;
  for (;;) {
    const res = await db.query(
      `DELETE FROM ${s}.outbox_delivery WHERE id IN (
         SELECT id FROM ${s}.outbox_delivery
          WHERE delivered_at IS NOT NULL AND delivered_at < clock_timestamp() - make_interval(secs => $1::double precision / 1000)
          LIMIT $2)`,
      [retentionMs, chunk],
    );
    total += res.rowCount ?? 0;
    if ((res.rowCount ?? 0) < chunk) return total;
  }
}
