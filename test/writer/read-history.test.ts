import { loadConfig } from '../../core/config';
import { readHistory } from '../../writer/read-history';
import { useTestDatabase } from '../support/isolation';

// The history of an aggregate (`outbox audit history`, the console's audit page) is in version order,
// also past version 9, and `at` cuts it at a time.
const db = useTestDatabase({ poolSize: 1 });

test('readHistory returns the events of an aggregate in version order past version 9, up to `at`', async () => {
  const { schema } = loadConfig({ ...process.env, DATABASE_URL: db.url }, { database: true });
  for (let i = 1; i <= 12; i++) {
    await db.pool.query(
      `INSERT INTO ${schema}.outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, occurred_at)
       VALUES ('user', 'u12', 'UserRenamed', 1, $1::jsonb, 'user:test', 'trace-history', $2)`,
      [JSON.stringify({ name: `N${i}` }), new Date(Date.UTC(2025, 0, 1, 0, i))],
    );
  }
  const all = await readHistory(db.pool, { schema, aggregateType: 'user', aggregateId: 'u12' });
  expect(all.map((e) => e.aggregate_version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  expect(all.map((e) => e.payload.name)).toEqual(Array.from({ length: 12 }, (_, i) => `N${i + 1}`));
  const early = await readHistory(db.pool, { schema, aggregateType: 'user', aggregateId: 'u12', at: new Date(Date.UTC(2025, 0, 1, 0, 10)) });
  expect(early.map((e) => e.aggregate_version)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
});
