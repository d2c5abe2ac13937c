import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { DEFAULT_SCHEMA, defaultProjectorSchema } from '../../core/config';
import { silentLogger } from '../../core/logger';
import { migrate } from '../../infra/migrate';
import { withSearchPath } from './global-setup';
import { freePort } from './private-stack';

const run = promisify(execFile);

/** The installed PostgreSQL 15 server binaries (initdb, pg_ctl, postgres); PG_BIN overrides. */
export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PrivatePostgres {
  port: number;
  dataDir: string;
  /** URL of the migrated database `outbox` (search_path: the outbox and projector schemas, as in the tests). */
  url: string;
  /** `pg_ctl stop -m immediate`: the postmaster and every backend quit at once, without a checkpoint (a crash: WAL replay at the next start). */
  crash(): Promise<{ stopMs: number }>;
  /** `pg_ctl start -w`: resolves once the server accepts connections (crash recovery done); `readyMs` from the call. */
  start(): Promise<{ readyMs: number }>;
  running(): Promise<boolean>;
  /** Stop the server (fast) and remove its directory unless `keep` (evidence of a failed test). */
  destroy(keep: boolean): Promise<void>;
}

/**
 * A PostgreSQL cluster of one test file's own — initdb into a temporary directory, its own port and
 * socket directory, trust authentication on loopback — for tests that crash and restart the server. The
 * machine's PostgreSQL (shared by everyone on the box) is never touched. The `outbox` database is
 * migrated like the test template. Running as root, the server runs as the `postgres` user (initdb and
 * postgres refuse root).
 */
export async function privatePostgres(name: string): Promise<PrivatePostgres> {
  const asRoot = process.getuid?.() === 0;
  const base = mkdtempSync(path.join(os.tmpdir(), `outbox-pg-${name.replace(/[^a-z0-9_-]/gi, '_').slice(0, 40)}-`));
  const dataDir = path.join(base, 'data');
  const logFile = path.join(base, 'server.log');
  if (asRoot) {
    const { uid, gid } = postgresUser();
    chownSync(base, uid, gid);
  }
  const pgRun = async (bin: string, args: string[], timeoutMs = 120_000): Promise<string> => {
    const file = path.join(PG_BIN, bin);
    const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args];
    try {
      const { stdout, stderr } = await run(cmd, argv, { timeout: timeoutMs, env: { ...process.env, LC_ALL: 'C', TZ: 'UTC' } });
      return stdout + stderr;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message?: string };
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').slice(-3000) : '';
      throw new Error(`${bin} ${args.join(' ')} failed: ${e.message ?? ''}\n${e.stdout ?? ''}${e.stderr ?? ''}\n${log}`, { cause: err });
    }
  };
  await pgRun('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync']);
  const port = await freePort();
  const serverOptions = [
    `-p ${port}`,
    `-c listen_addresses=127.0.0.1`,
    `-c unix_socket_directories=${base}`,
    `-c max_connections=200`,
    `-c shared_buffers=64MB`,
    `-c log_min_messages=warning`,
  ].join(' ');
  const start = async (): Promise<{ readyMs: number }> => {
    const t0 = Date.now();
    await pgRun('pg_ctl', ['start', '-w', '-t', '120', '-D', dataDir, '-l', logFile, '-o', serverOptions], 150_000);
    return { readyMs: Date.now() - t0 };
  };
  const running = async (): Promise<boolean> =>
    pgRun('pg_ctl', ['status', '-D', dataDir]).then(
      () => true,
      () => false,
    );
  await start();
  const plain = `postgres://postgres@127.0.0.1:${port}/outbox`;
  const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres` });
  await admin.connect();
  try {
    await admin.query('CREATE DATABASE outbox');
  } finally {
    await admin.end();
  }
  const c = new pg.Client({ connectionString: plain });
  await c.connect();
  try {
    await migrate(c, { schema: DEFAULT_SCHEMA, projectorSchema: defaultProjectorSchema(DEFAULT_SCHEMA), logger: silentLogger() });
  } finally {
    await c.end();
  }
  let destroyed = false;
  return {
    port,
    dataDir,
    url: withSearchPath(plain),
    async crash() {
      const t0 = Date.now();
      await pgRun('pg_ctl', ['stop', '-m', 'immediate', '-w', '-D', dataDir]);
      return { stopMs: Date.now() - t0 };
    },
    start,
    running,
    async destroy(keep) {
      if (destroyed) return;
      destroyed = true;
      if (await running()) await pgRun('pg_ctl', ['stop', '-m', 'fast', '-w', '-D', dataDir]).catch(() => pgRun('pg_ctl', ['stop', '-m', 'immediate', '-w', '-D', dataDir]));
      if (keep) {
        process.stderr.write(`kept the private PostgreSQL data directory ${dataDir} of a failed test (log: ${logFile})\n`);
        return;
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) throw new Error('running as root, but there is no postgres user to run a private PostgreSQL as');
  return { uid: Number(uid), gid: Number(gid) };
}
