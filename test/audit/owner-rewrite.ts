import type pg from 'pg';

/**
 * What a database owner (no superuser needed) can do to the history: disable the user triggers, change
 * v3's payload, delete v5, recompute the chain from v3 with the migration's own canonical encoding, and
 * move outbox_aggregates back. The plain chain verifier cannot see it afterwards.
 */
export async function ownerRewrite(pool: pg.Pool, options: { schema: string; aggregateType: string; aggregateId: string }): Promise<void> {
  const s = `"${options.schema}"`;
  const agg = [options.aggregateType, options.aggregateId];
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`ALTER TABLE ${s}.outbox DISABLE TRIGGER USER`);
    await client.query(`UPDATE ${s}.outbox SET payload = '{"email": "forged@example.com"}'::jsonb WHERE aggregate_type = $1 AND aggregate_id = $2 AND aggregate_version = 3`, agg);
    await client.query(`DELETE FROM ${s}.outbox_delivery WHERE id IN (SELECT id FROM ${s}.outbox WHERE aggregate_type = $1 AND aggregate_id = $2 AND aggregate_version = 5)`, agg);
    const del = await client.query(`DELETE FROM ${s}.outbox WHERE aggregate_type = $1 AND aggregate_id = $2 AND aggregate_version = 5`, agg);
    if (del.rowCount !== 1) throw new Error('the aggregate has no version 5');
    for (const v of [3, 4]) {
      await client.query(
        `UPDATE ${s}.outbox o
            SET prev_hash = p.hash,
                hash = sha256(p.hash || ${s}.outbox_canonical_encoding(o.event_id, o.aggregate_type, o.aggregate_id, o.aggregate_version,
                         o.event_type, o.schema_version, o.occurred_at, o.actor_id, o.trace_id, o.correlation_id, o.causation_id,
                         o.traceparent, o.payload))
           FROM ${s}.outbox p
          WHERE p.aggregate_type = o.aggregate_type AND p.aggregate_id = o.aggregate_id AND p.aggregate_version = o.aggregate_version - 1
            AND o.aggregate_type = $1 AND o.aggregate_id = $2 AND o.aggregate_version = $3`,
        [...agg, v],
      );
    }
    await client.query(
      `UPDATE ${s}.outbox_aggregates a SET version = 4, last_hash = o.hash
         FROM ${s}.outbox o
        WHERE o.aggregate_type = a.aggregate_type AND o.aggregate_id = a.aggregate_id AND o.aggregate_version = 4
          AND a.aggregate_type = $1 AND a.aggregate_id = $2`,
      agg,
    );
    await client.query(`ALTER TABLE ${s}.outbox ENABLE TRIGGER USER`);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
