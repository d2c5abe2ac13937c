import { childEnv, emptyEnvFile, runAll, runOutbox } from './run-outbox';

// Every subcommand, run as a child process (`node bin/outbox.js ...`), with bad flags and with bad
// configuration: a non-zero exit code and exactly one line on stderr that names the problem.
const ENV_FILE = emptyEnvFile();
const good = {
  DATABASE_URL: process.env.DATABASE_URL!,
  KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
  SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
};
const env = (vars: Record<string, string | undefined>) => childEnv({ OUTBOX_ENV_FILE: ENV_FILE, ...vars });
const EVENT = '6f1c1b8e-2a4b-4c1e-9d3a-0a1b2c3d4e5f';

const SUBCOMMANDS: string[][] = [
  ['migrate'],
  ['relay'],
  ['project'],
  ['rebuild', 'users'],
  ['schemas', 'check'],
  ['schemas', 'register'],
  ['parked', 'list'],
  ['parked', 'retry', EVENT],
  ['parked', 'skip', EVENT],
  ['audit', 'history', 'user/1'],
  ['audit', 'verify'],
  ['status'],
  ['demo'],
];

function expectOneLine(c: { args: string[]; result: { code: number | null; lines: string[]; stderr: string; stdout: string } }, code: number, names: RegExp): void {
  const label = `outbox ${c.args.join(' ')}`;
  expect({ label, code: c.result.code }).toEqual({ label, code });
  expect({ label, lines: c.result.lines.length, stderr: c.result.stderr }).toEqual({ label, lines: 1, stderr: c.result.stderr });
  expect(c.result.lines[0]).toMatch(/^outbox: /);
  expect({ label, line: c.result.lines[0] }).toEqual({ label, line: expect.stringMatching(names) });
  expect(c.result.stderr).not.toMatch(/\n\s+at /); // no stack trace without --verbose
}

test('every subcommand has --help (exit 0, usage on stdout)', async () => {
  const results = await runAll(SUBCOMMANDS.map((args) => ({ args: [...args, '--help'], env: env({}) })));
  for (const c of results) {
    expect({ args: c.args, code: c.result.code, stderr: c.result.stderr }).toEqual({ args: c.args, code: 0, stderr: '' });
    expect(c.result.stdout).toContain(`Usage: outbox ${c.args.filter((a) => !a.includes('/') && a !== EVENT && a !== 'users' && a !== '--help').join(' ')}`);
    expect(c.result.stdout).toContain('--json');
  }
});

test('an unknown flag on any subcommand: exit 2, one line naming the flag', async () => {
  const results = await runAll(SUBCOMMANDS.map((args) => ({ args: [...args, '--bogus-flag'], env: env(good) })));
  for (const c of results) expectOneLine(c, 2, /unknown flag --bogus-flag/);
});

test('bad flag values and arguments: exit 2, one line naming the problem', async () => {
  const cases = [
    { args: ['audit', 'history', 'user/1', '--format', 'xml'], names: /--format must be one of table, json, csv/ },
    { args: ['audit', 'history', 'user-without-id'], names: /<aggregate_type>\/<id>/ },
    { args: ['audit', 'history', 'user/1', '--at', 'yesterday-ish'], names: /--at must be a time/ },
    { args: ['audit', 'history', 'user/1', '--at'], names: /--at needs a value/ },
    { args: ['audit', 'history'], names: /missing argument <aggregate>/ },
    { args: ['audit', 'verify', '--aggregate', 'nope'], names: /--aggregate must be <aggregate_type>\/<id>/ },
    { args: ['parked', 'retry', 'not-a-uuid'], names: /<event_id> must be a UUID/ },
    { args: ['parked', 'skip'], names: /missing argument <event_id>/ },
    { args: ['parked', 'list', '--limit', 'many'], names: /--limit must be a positive whole number/ },
    { args: ['parked', 'list', '--json=yes'], names: /--json takes no value/ },
    { args: ['parked', 'fly'], names: /unknown subcommand "fly" of "outbox parked"/ },
    { args: ['rebuild'], names: /missing argument <projection>/ },
    { args: ['relay', '--admin-port', 'abc'], names: /--admin-port must be a port number/ },
    { args: ['status', 'extra'], names: /unexpected argument "extra"/ },
    { args: ['frobnicate'], names: /unknown command "frobnicate"/ },
  ];
  const results = await runAll(cases.map((c) => ({ ...c, env: env(good) })));
  for (const c of results) expectOneLine(c, 2, c.names);
});

test('bad configuration: exit 1, one line naming the variable or the unreachable server', async () => {
  const cases = [
    // missing variable
    { args: ['migrate'], env: env({}), names: /DATABASE_URL is not set/ },
    { args: ['parked', 'list'], env: env({}), names: /DATABASE_URL is not set/ },
    { args: ['audit', 'history', 'user/1'], env: env({}), names: /DATABASE_URL is not set/ },
    { args: ['audit', 'verify'], env: env({}), names: /DATABASE_URL is not set/ },
    { args: ['schemas', 'check'], env: env({}), names: /SCHEMA_REGISTRY_URL is not set/ },
    { args: ['relay'], env: env({ ...good, KAFKA_BROKERS: undefined }), names: /KAFKA_BROKERS is not set/ },
    { args: ['demo'], env: env({ ...good, SCHEMA_REGISTRY_URL: undefined }), names: /SCHEMA_REGISTRY_URL is not set/ },
    // malformed
    { args: ['status'], env: env({ ...good, DATABASE_URL: 'not a url' }), names: /DATABASE_URL is not a valid URL/ },
    { args: ['parked', 'retry', EVENT], env: env({ DATABASE_URL: 'mysql://u@h/db' }), names: /DATABASE_URL must start with postgres:\/\// },
    { args: ['project'], env: env({ ...good, KAFKA_BROKERS: 'x' }), names: /KAFKA_BROKERS has an invalid entry "x" \(expected host:port\)/ },
    { args: ['schemas', 'register'], env: env({ SCHEMA_REGISTRY_URL: 'ftp://registry' }), names: /SCHEMA_REGISTRY_URL must be http:\/\/ or https:\/\// },
    { args: ['migrate'], env: env({ ...good, LOG_LEVEL: 'loud' }), names: /LOG_LEVEL must be one of/ },
    { args: ['rebuild', 'users'], env: env({ ...good, KAFKA_SASL_MECHANISM: 'GSSAPI' }), names: /KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512/ },
    { args: ['relay'], env: env({ ...good, OUTBOX_RELAY_POLL_INTERVAL: 'soon' }), names: /OUTBOX_RELAY_POLL_INTERVAL must be a duration/ },
    // unreachable
    { args: ['relay'], env: env({ ...good, KAFKA_BROKERS: '127.0.0.1:1' }), names: /Kafka at 127\.0\.0\.1:1 is unreachable/ },
    { args: ['project'], env: env({ ...good, KAFKA_BROKERS: '127.0.0.1:1' }), names: /Kafka at 127\.0\.0\.1:1 is unreachable/ },
    { args: ['rebuild', 'users'], env: env({ ...good, KAFKA_BROKERS: '127.0.0.1:1' }), names: /Kafka at 127\.0\.0\.1:1 is unreachable/ },
    { args: ['demo'], env: env({ ...good, KAFKA_BROKERS: '127.0.0.1:1' }), names: /Kafka at 127\.0\.0\.1:1 is unreachable/ },
    { args: ['status'], env: env({ ...good, KAFKA_BROKERS: '127.0.0.1:1' }), names: /status incomplete: .*Kafka at 127\.0\.0\.1:1 is unreachable/ },
    { args: ['migrate'], env: env({ DATABASE_URL: 'postgres://u@127.0.0.1:1/db' }), names: /PostgreSQL at 127\.0\.0\.1:1\/db is unreachable: .*ECONNREFUSED/ },
    { args: ['parked', 'skip', EVENT], env: env({ DATABASE_URL: 'postgres://u@127.0.0.1:1/db' }), names: /PostgreSQL at 127\.0\.0\.1:1\/db is unreachable/ },
    { args: ['audit', 'history', 'user/1'], env: env({ DATABASE_URL: 'postgres://u@127.0.0.1:1/db' }), names: /PostgreSQL at 127\.0\.0\.1:1\/db is unreachable/ },
    { args: ['schemas', 'check'], env: env({ SCHEMA_REGISTRY_URL: 'http://127.0.0.1:1' }), names: /schema registry at http:\/\/127\.0\.0\.1:1 is unreachable/ },
    { args: ['status'], env: env({ ...good, SCHEMA_REGISTRY_URL: 'http://127.0.0.1:1' }), names: /schema registry at http:\/\/127\.0\.0\.1:1 is unreachable/ },
    // the env file itself
    { args: ['migrate'], env: childEnv({ OUTBOX_ENV_FILE: '/nonexistent/outbox.env' }), names: /OUTBOX_ENV_FILE names \/nonexistent\/outbox.env, which does not exist/ },
  ];
  const results = await runAll(cases);
  for (const c of results) expectOneLine(c, 1, c.names);
});

test('--verbose adds the stack trace; --json makes the error line JSON', async () => {
  const [verbose, json] = await Promise.all([
    runOutbox(['migrate', '--verbose'], env({ DATABASE_URL: 'postgres://u@127.0.0.1:1/db' })),
    runOutbox(['migrate', '--json'], env({ DATABASE_URL: 'postgres://u@127.0.0.1:1/db' })),
  ]);
  expect(verbose.code).toBe(1);
  expect(verbose.lines[0]).toMatch(/^outbox: PostgreSQL at 127\.0\.0\.1:1\/db is unreachable/);
  expect(verbose.stderr).toMatch(/\n\s+at /);
  expect(json.code).toBe(1);
  expect(json.lines).toHaveLength(1);
  expect(JSON.parse(json.lines[0]!)).toEqual({ error: { code: 'DB_UNAVAILABLE', message: expect.stringContaining('127.0.0.1:1/db is unreachable') } });
});

test('no command: usage and exit 2; --version', async () => {
  const [none, version] = await Promise.all([runOutbox([], env({})), runOutbox(['--version'], env({}))]);
  expect(none.code).toBe(2);
  expect(none.stdout).toContain('Usage: outbox <command>');
  expect(version.code).toBe(0);
  expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
});
