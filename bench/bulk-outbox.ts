/**
 * Bulk-load outbox rows for benchmarks that need millions of them: rows shaped as the insert trigger
 * writes them (ids, per-aggregate versions, 32-byte prev_hash/hash, a delivery row each), inserted with
 * triggers off (session_replication_role = replica) in chunks of 100,000, so loading does not hash every
 * event. `delivered: true` makes history (delivered, as within the retention period); `false` a backlog
 * of pending events. The hashes are not a valid chain: nothing that reads these rows verifies it.
 * Needs a superuser connection (session_replication_role); continues the id sequence.
 */
import pg from 'pg';

const NAME = 'x'.repeat(1_000); // with the email: about 1 KB of payload

export async function bulkOutbox(url: string, options: { rows: number; delivered: boolean; aggregatePrefix: string; aggregates?: number }): Promise<number> {
  const { rows, delivered, aggregatePrefix } = options;
  const aggregates = options.aggregates ?? 2_000;
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const started = Date.now();
  try {
    await c.query('SET session_replication_role = replica');
    await c.query('SET synchronous_commit = off');
    const first = Number((await c.query<{ n: string }>('SELECT coalesce(max(id), 0)::text AS n FROM outbox')).rows[0]!.n) + 1;
    for (let from = first; from < first + rows; from += 100_000) {
      const n = Math.min(100_000, first + rows - from);
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO outbox (id, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version, payload,
                             actor_id, trace_id, correlation_id, prev_hash, hash)
         SELECT g, gen_random_uuid(), 'user', $4 || (g % $5), g / $5 + 1, 'UserRegistered', 1,
                jsonb_build_object('email', $4 || g || '@example.com', 'name', $2::text), 'bench', md5(g::text), 'req-' || g,
                sha256(((g - $5)::text)::bytea), sha256((g::text)::bytea)
           FROM generate_series($1::bigint, $1::bigint + $3::bigint - 1) g`,
        [from, NAME, n, aggregatePrefix, aggregates],
      );
      await c.query(
        `INSERT INTO outbox_delivery (id, aggregate_type, aggregate_id, aggregate_version, enqueued_at, delivered_at, topic, kafka_partition, kafka_offset)
         SELECT g, 'user', $3 || (g % $4), g / $4 + 1, now(),
                ${delivered ? "now(), 'user.events', (g % 6)::int, g / 6" : 'NULL, NULL, NULL, NULL'}
           FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) g`,
        [from, n, aggregatePrefix, aggregates],
      );
      await c.query('COMMIT');
    }
    await c.query(`SELECT setval('outbox_id_seq', (SELECT max(id) FROM outbox))`);
    await c.query('RESET session_replication_role');
    await c.query('ANALYZE outbox');
    await c.query('ANALYZE outbox_delivery');
  } finally {
    await c.end();
  }
  return Math.round((rows / Math.max(1, Date.now() - started)) * 1000);
}
