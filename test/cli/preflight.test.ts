import { childEnv, emptyEnvFile, runAll } from './run-outbox';

// `outbox relay` and `outbox project` pointed at a schema that was never migrated stop at start-up with
// one line naming OUTBOX_SCHEMA and what to do, instead of retrying "relation does not exist" forever.
const ENV_FILE = emptyEnvFile();
const good = {
  DATABASE_URL: process.env.DATABASE_URL!,
  KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
  SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
};

test('relay and project refuse an unmigrated OUTBOX_SCHEMA: exit 1, one line naming it and `outbox migrate`', async () => {
  const env = childEnv({ OUTBOX_ENV_FILE: ENV_FILE, ...good, OUTBOX_SCHEMA: 'never_migrated', OUTBOX_PROJECTOR_SCHEMA: 'never_migrated_read' });
  const results = await runAll([
    { args: ['relay'], env },
    { args: ['project'], env },
  ]);
  for (const { args, result: r } of results) {
    expect({ args, code: r.code, lines: r.lines.length }).toEqual({ args, code: 1, lines: 1 });
    expect(r.lines[0]).toMatch(/^outbox: OUTBOX_SCHEMA "never_migrated" holds no outbox tables in database \S+: run `outbox migrate` first/);
  }
}, 120_000);
