import { spawnSync } from 'node:child_process';
import { REPO } from './run-outbox';

// cli/lazy.ts loads the relay, the projector's runtime, the console and the Avro code (avsc) only when a
// command runs them: `outbox --help` and `outbox <command> --help` must not load them.
const LAZY = [/[\\/]relay[\\/]index\.ts$/, /[\\/]projector[\\/]index\.ts$/, /[\\/]console[\\/]index\.ts$/, /[\\/]schemas[\\/]index\.ts$/, /[\\/]node_modules[\\/]avsc[\\/]/];

/** The modules `outbox <args>` loaded (the CLI run in this checkout through tsx, as bin/outbox.js does). */
function modulesLoadedBy(args: string[]): string[] {
  const script = [
    "process.on('exit', () => process.stderr.write('\\nMODULES ' + JSON.stringify(Object.keys(require.cache)) + '\\n'));",
    "process.argv.splice(1, 0, 'outbox');",
    "process.env.OUTBOX_CLI_MAIN = '1';",
    "require('./cli/main.ts');",
  ].join('\n');
  const r = spawnSync(process.execPath, ['--require', require.resolve('tsx/cjs', { paths: [REPO] }), '-e', script, '--', ...args], {
    cwd: REPO,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, OUTBOX_ENV_FILE: '/dev/null' },
    encoding: 'utf8',
    timeout: 120_000,
  });
  expect(r.status).toBe(0);
  const line = r.stderr.split('\n').find((l) => l.startsWith('MODULES '));
  if (line === undefined) throw new Error(`no module list from outbox ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(line.slice('MODULES '.length)) as string[];
}

test.each(['--help', 'status --help', 'relay --help', 'project --help', 'rebuild --help', 'schemas check --help', 'console --help'])(
  'outbox %s loads neither avsc nor the relay, projector, schemas or console entry points',
  (line) => {
    const loaded = modulesLoadedBy(line.split(' '));
    expect(loaded.some((m) => m.endsWith('main.ts'))).toBe(true);
    expect(loaded.filter((m) => LAZY.some((re) => re.test(m)))).toEqual([]);
  },
  120_000,
);
