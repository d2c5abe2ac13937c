import { ConfigResourceTypes } from 'kafkajs';
import { loadConfig } from '../../core/config';
import { isOutboxError } from '../../core/errors';
import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { replicationMismatches, resolveReplication } from '../../core/topics';
import { TopicDirectory } from '../../relay/ensure-topics';
import { uniqueName } from '../support/isolation';

// Topics kafka-outbox creates get a replication that fits the cluster (min(3, brokers), min.insync.replicas
// one less, at least 1), or the configured one; settings the cluster cannot honour are refused by name; an
// existing topic with other settings is reported, not silently used. (On the shared one-broker stack here;
// test/faults/cluster.fault.ts shows replication 3 / min.insync 2 on three brokers.)
const config = loadConfig({ ...process.env, OUTBOX_ENV_FILE: '/dev/null' }, { kafka: true });
const kafka = createKafka(config.kafka, createLogger({ level: 'silent' }));
const admin = kafka.admin();
beforeAll(() => admin.connect());
afterAll(() => admin.disconnect());

test('defaults fit the cluster; a replication factor above the broker count or a min.insync above it is refused by name', async () => {
  expect(await resolveReplication(admin, {})).toEqual({ replicationFactor: 1, minInsyncReplicas: 1 });
  const refused = async (settings: Parameters<typeof resolveReplication>[1]): Promise<string> =>
    resolveReplication(admin, settings).then(
      () => 'accepted',
      (err: unknown) => (isOutboxError(err, 'CONFIG_INVALID') ? err.message : String(err)),
    );
  expect(await refused({ topicReplicationFactor: 3 })).toMatch(/^OUTBOX_TOPIC_REPLICATION_FACTOR is 3 but the cluster has 1 broker/);
  expect(await refused({ topicReplicationFactor: 1, topicMinInsyncReplicas: 2 })).toMatch(/^OUTBOX_TOPIC_MIN_INSYNC_REPLICAS is 2, above the replication factor 1/);
});

test('the relay creates its topics with min.insync.replicas set, and reports an existing topic whose settings differ', async () => {
  const lines: Array<{ msg: string; topic?: string }> = [];
  const logger = createLogger({ level: 'silent' });
  const spy = Object.assign(Object.create(logger) as typeof logger, { warn: (obj: { topic?: string }, msg: string) => void lines.push({ msg, topic: obj.topic }) });
  const fresh = uniqueName('repl_fresh');
  const odd = uniqueName('repl_odd');
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic: odd, numPartitions: 1, replicationFactor: 1, configEntries: [{ name: 'min.insync.replicas', value: '2' }] }],
  });
  const dir = new TopicDirectory(admin, { partitions: 2, logger: spy, replication: {} });
  await dir.ensure([fresh, odd]);
  const cfg = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: fresh, configNames: ['min.insync.replicas'] }] });
  expect(cfg.resources[0]?.configEntries.find((e) => e.configName === 'min.insync.replicas')?.configValue).toBe('1');
  expect(await replicationMismatches(admin, [fresh], { replicationFactor: 1, minInsyncReplicas: 1 })).toEqual([]);
  expect(lines).toEqual([{ topic: odd, msg: expect.stringMatching(new RegExp(`^topic ${odd} exists with replication factor 1 and min.insync.replicas 2, not 1 and 1`)) }]);
  await admin.deleteTopics({ topics: [fresh, odd] });
}, 60_000);
