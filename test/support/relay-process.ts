// A relay in its own process, for tests that kill it (-9) or run several at once. Configured by the
// environment (DATABASE_URL, KAFKA_BROKERS, SCHEMA_REGISTRY_URL, OUTBOX_*); prints "relay started" and
// a line "leader" when it becomes the active relay.
import { loadConfig } from '../../core/config';
import { createLogger } from '../../core/logger';
import { startRelay } from '../../relay';

const config = loadConfig(process.env, { database: true, kafka: true, registry: true });
const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn' });
const relay = startRelay({
  config,
  logger,
  standbyPollMs: Number(process.env.RELAY_STANDBY_POLL_MS ?? 500),
  observer: {
    leadership: (isLeader) => process.stdout.write(isLeader ? 'leader\n' : 'standby\n'),
  },
});
process.stdout.write('relay started\n');
const stop = (): void => {
  void relay.stop().then(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
