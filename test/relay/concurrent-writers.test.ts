import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { startRelay } from '../../relay';
import { checkDelivery } from '../support/delivery-check';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { relayConfig } from '../support/relay-env';
import { writeWorkload } from '../support/workload';

const db = useTestDatabase({ poolSize: 10 });
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });

test('10,000 events from 8 concurrent writers over 200 aggregates: none lost, first occurrences in version order', async () => {
  const topic = uniqueName('conc');
  const config = relayConfig(db.url, topic);
  const relay = startRelay({ config, logger });
  try {
    const written = await writeWorkload(db.pool, { writers: 8, total: 10_000, aggregates: 200, perTx: 5 });
    expect(written).toBe(10_000);
    const report = await checkDelivery(db.pool, createKafka(config.kafka, logger), [topic], { timeoutMs: 120_000 });
    process.stdout.write(`concurrent writers: ${JSON.stringify(report)}\n`);
    expect(report).toMatchObject({ committed: 10_000, lost: 0, reordered: 0, unexpected: 0, duplicates: 0, divergent: 0, malformed: 0 });
  } finally {
    await relay.stop();
  }
});
