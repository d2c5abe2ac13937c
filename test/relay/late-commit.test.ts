import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { startRelay } from '../../relay';
import { checkDelivery } from '../support/delivery-check';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { naivePoller } from '../support/naive-poller';
import { INSERT_EVENT, relayConfig } from '../support/relay-env';

// The known trap: a poller that reads `WHERE id > $last` loses a row whose transaction commits after
// rows with higher ids became visible. The relay must not; the naive poller in the same test must
// (proving the test can see a loss).
const db = useTestDatabase();
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

test('an event whose transaction commits late is published; a naive id poller loses it; rolled-back events never appear', async () => {
  const topic = uniqueName('late');
  const config = relayConfig(db.url, topic);
  const relay = startRelay({ config, logger });
  const naive = naivePoller(db.pool);
  try {
    // T1 inserts first (lowest id) and stays open for 5 s.
    const t1 = await db.pool.connect();
    await t1.query('BEGIN');
    await t1.query(INSERT_EVENT, ['late-1', 'late@example.com', 'late']);
    // A rolled-back transaction, with ids among the others.
    const rb = await db.pool.connect();
    await rb.query('BEGIN');
    await rb.query(INSERT_EVENT, ['rolled-back', 'never@example.com', 'rollback']);

    // Meanwhile 100 events commit in their own transactions.
    for (let i = 0; i < 100; i++) await db.pool.query(INSERT_EVENT, [`agg-${i % 10}`, `u${i}@example.com`, `c${i}`]);
    await new Promise((r) => setTimeout(r, 5000));
    await rb.query('ROLLBACK');
    rb.release();
    await t1.query('COMMIT');
    t1.release();

    const report = await checkDelivery(db.pool, createKafka(config.kafka, logger), [topic]);
    expect(report).toMatchObject({ committed: 101, lost: 0, reordered: 0, unexpected: 0, duplicates: 0, divergent: 0, malformed: 0 });

    const messages = await readTopics(createKafka(config.kafka, logger), [topic]);
    const ids = messages.map((m) => m.message.headers?.aggregate_id?.toString());
    expect(ids).toContain('late-1');
    expect(ids).not.toContain('rolled-back');

    // The control: the naive poller saw the 100, but never the late one.
    await new Promise((r) => setTimeout(r, 300));
    const late = await db.pool.query<{ event_id: string }>("SELECT event_id::text FROM outbox WHERE aggregate_id = 'late-1'");
    expect(naive.seen.size).toBe(100);
    expect(naive.seen.has(late.rows[0]!.event_id)).toBe(false);
  } finally {
    await naive.stop();
    await relay.stop();
  }
});
