// A relay in its own process, for tests that kill it (-9) or run several at once. Configured by the
// environment (DATABASE_URL, KAFKA_BROKERS, SCHEMA_REGISTRY_URL, OUTBOX_*); prints "relay started" and
// a line "leader" when it becomes the active relay. With RELAY_BATCH_LOG=<file>, every publication is
// appended to that file: "start <instance> <batch> <ms> <shards>" before it, "end <instance> <batch> <ms>"
// once acknowledged (test/relay/shards.test.ts checks that no shard is published by two instances at once).
import { appendFileSync } from 'node:fs';
import { loadConfig } from '../../core/config';
import { createLogger } from '../../core/logger';
import { startRelay, type Sink } from '../../relay';

const config = loadConfig(process.env, { database: true, kafka: true, registry: true });
const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn' });
const batchLog = process.env.RELAY_BATCH_LOG;
let batches = 0;
const recording = (sink: Sink): Sink => ({
  prepare: (o) => sink.prepare(o),
  reset: () => sink.reset(),
  async publish(batch) {
    const n = ++batches;
    const shards = [...new Set(batch.map((e) => e.event.shard))].join(',');
    appendFileSync(batchLog!, `start ${config.relay.instanceId} ${n} ${Date.now()} ${shards}\n`);
    const outcome = await sink.publish(batch);
    appendFileSync(batchLog!, `end ${config.relay.instanceId} ${n} ${Date.now()}\n`);
    return outcome;
  },
});
const relay = startRelay({
  config,
  logger,
  standbyPollMs: Number(process.env.RELAY_STANDBY_POLL_MS ?? 500),
  observer: {
    leadership: (isLeader) => process.stdout.write(isLeader ? 'leader\n' : 'standby\n'),
  },
  ...(batchLog !== undefined ? { decorateSink: recording } : {}),
});
process.stdout.write('relay started\n');
const stop = (): void => {
  void relay.stop().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
