import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { builtInProjections, startProjector, type RunningProjector } from '../../projector';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { createTopic, produceWith, testCatalog, testConfig, testEncoder, UserStreams, waitFor } from './support';

// A projector started before the relay has created its topic waits for it (instead of failing), and
// a topic that never comes is named in the error after the wait.
const db = useTestDatabase();
const logger = silentLogger();
let projector: RunningProjector | undefined;

afterAll(async () => {
  await projector?.stop();
});

test('waits for a topic created after it started, then projects', async () => {
  const config = testConfig(db.url);
  const kafka = createKafka(config.kafka, logger);
  const topic = uniqueName('late_topic');
  const catalog = testCatalog(uniqueName('ns'));
  const starting = startProjector({
    config,
    logger,
    pool: db.pool,
    catalog,
    projections: ({ catalog: cat }) => builtInProjections(config, { catalog: cat, topics: [topic] }),
    groupIdPrefix: uniqueName('g'),
    sessionTimeoutMs: 6000,
  });
  await new Promise((r) => setTimeout(r, 2000));
  await createTopic(kafka, topic, 1);
  projector = await starting;
  await produceWith(kafka, await testEncoder(config, catalog, logger), topic, new UserStreams().life('early', 5));
  await waitFor('applied', async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]!.n === 5);
});

test('a topic that never appears fails the start with its name', async () => {
  const config = testConfig(db.url);
  const topic = uniqueName('never');
  await expect(
    startProjector({
      config,
      logger,
      pool: db.pool,
      catalog: testCatalog(uniqueName('ns')),
      projections: ({ catalog: cat }) => builtInProjections(config, { catalog: cat, topics: [topic] }),
      groupIdPrefix: uniqueName('g'),
      topicWaitMs: 1500,
    }),
  ).rejects.toThrow(new RegExp(`topic\\(s\\) ${topic} do not exist \\(the relay creates them`));
});
