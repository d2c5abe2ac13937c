/**
 * A private PostgreSQL 15 cluster for one bench run: initdb into a fresh directory, its own port,
 * `wal_level = logical` (Debezium reads the WAL through a replication slot), started with pg_ctl and
 * removed again by `destroy()`. The machine's shared server is never touched or reconfigured.
 *
 * Run as root (as on the dev box), the server runs as the `postgres` OS user (PostgreSQL refuses root).
 * Each cluster directory holds `owner.pid`: a later run removes clusters whose owner died without
 * cleaning up (a SIGKILLed bench).
 */
import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const PREFIX = 'kafka-outbox-peers-';

export interface PrivateCluster {
  dir: string;
  port: number;
  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url(database: string): string;
  destroy(): Promise<void>;
}

function osUser(): { uid: number; gid: number; asUser: string[] } | null {
  if (process.getuid?.() !== 0) return null;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root, but there is no `postgres` OS user to run a private PostgreSQL cluster as');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid), asUser: ['runuser', '-u', 'postgres', '--'] };
}

async function pgCommand(args: string[]): Promise<string> {
  const user = osUser();
  const [cmd, ...rest] = [...(user?.asUser ?? []), ...args];
  const { stdout, stderr } = await run(cmd!, rest, { timeout: 120_000 });
  return stdout + stderr;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stop and remove clusters (and Connect workers) left behind by bench runs whose process is gone. */
/** The pid of a running cluster's postmaster (its backends are its children), from the data directory. */
export function postmasterPid(clusterDir: string): number {
  return Number(readFileSync(path.join(clusterDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
}

export function removeStaleClusters(): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(os.tmpdir())) {
    if (!name.startsWith(PREFIX)) continue;
    const dir = path.join(os.tmpdir(), name);
    const owner = Number(existsSync(path.join(dir, 'owner.pid')) ? readFileSync(path.join(dir, 'owner.pid'), 'utf8') : NaN);
    if (Number.isFinite(owner) && alive(owner)) continue;
    for (const child of ['connect.pid', 'relay.pid']) {
      const f = path.join(dir, child);
      const pid = existsSync(f) ? Number(readFileSync(f, 'utf8')) : NaN;
      // only a process whose command line names this directory is ours
      if (Number.isFinite(pid) && alive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) process.kill(pid, 'SIGKILL');
    }
    if (existsSync(path.join(dir, 'data', 'postmaster.pid'))) {
      try {
        const user = osUser();
        const [cmd, ...rest] = [...(user?.asUser ?? []), path.join(PG_BIN, 'pg_ctl'), '-D', path.join(dir, 'data'), '-m', 'immediate', '-w', 'stop'];
        execFileSync(cmd!, rest, { stdio: 'ignore', timeout: 60_000 });
      } catch {
        /* not running */
      }
    }
    rmSync(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  return removed;
}

export async function startPrivateCluster(options: { port: number; settings?: Record<string, string> }): Promise<PrivateCluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), PREFIX));
  writeFileSync(path.join(dir, 'owner.pid'), String(process.pid));
  const user = osUser();
  if (user) chownSync(dir, user.uid, user.gid);
  const data = path.join(dir, 'data');
  let started = false;
  const destroy = async (): Promise<void> => {
    if (started) {
      await pgCommand([path.join(PG_BIN, 'pg_ctl'), '-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']).catch(() =>
        pgCommand([path.join(PG_BIN, 'pg_ctl'), '-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => ''),
      );
      started = false;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await pgCommand([path.join(PG_BIN, 'initdb'), '-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale', 'C.UTF-8', '--no-sync']);
    const settings: Record<string, string> = {
      port: String(options.port),
      listen_addresses: "'127.0.0.1'",
      unix_socket_directories: "''",
      wal_level: 'logical',
      max_wal_senders: '10',
      max_replication_slots: '10',
      max_connections: '100',
      ...options.settings,
    };
    const conf = Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join('\n');
    writeFileSync(path.join(data, 'postgresql.conf'), `${readFileSync(path.join(data, 'postgresql.conf'), 'utf8')}\n# kafka-outbox peer bench\n${conf}\n`);
    started = true;
    await pgCommand([path.join(PG_BIN, 'pg_ctl'), '-D', data, '-l', path.join(dir, 'postgres.log'), '-w', '-t', '60', 'start']);
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    dir,
    port: options.port,
    url: (database) => `postgres://postgres@127.0.0.1:${options.port}/${database}`,
    destroy,
  };
}
