import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { startRelay } from '../../relay';
import { checkDelivery } from '../support/delivery-check';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { INSERT_EVENT, relayConfig } from '../support/relay-env';

// Delivery bookkeeping is removed after OUTBOX_DELIVERED_RETENTION; the history itself is kept, and
// pending or parked bookkeeping is never removed.
const db = useTestDatabase();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

test('delivered bookkeeping older than the retention is cleaned; history and undelivered rows stay', async () => {
  const topic = uniqueName('retention');
  for (let i = 0; i < 20; i++) await db.pool.query(INSERT_EVENT, [`r${i % 4}`, `r${i}@example.com`, `c${i}`]);
  // A parked (undelivered) event of another aggregate must survive the cleaning.
  await db.pool.query(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     VALUES ('user', 'stuck', 'NoSuchEvent', 1, '{}'::jsonb, 'a', 't')`,
  );
  const config = relayConfig(db.url, topic, { OUTBOX_DELIVERED_RETENTION: '1s' });
  const relay = startRelay({ config, logger, cleanIntervalMs: 200 });
  try {
    const count = async (where: string): Promise<number> =>
      Number((await db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM outbox_delivery WHERE ${where}`)).rows[0]!.n);
    const deadline = Date.now() + 30_000;
    while ((await count('true')) > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await count('delivered_at IS NOT NULL')).toBe(0);
    expect(await count("aggregate_id = 'stuck' AND parked_at IS NOT NULL")).toBe(1);
    const history = await db.pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox');
    expect(history.rows[0]!.n).toBe('21');
    expect(await count('true')).toBe(1); // the 20 delivered rows were cleaned, not merely never delivered
    const delivered = await checkDelivery(db.pool, createKafka(config.kafka, logger), [topic], { where: "aggregate_id <> 'stuck'", timeoutMs: 30_000 });
    expect(delivered).toMatchObject({ committed: 20, messages: 20, lost: 0, duplicates: 0, reordered: 0, unexpected: 0 });
  } finally {
    await relay.stop();
  }
});
