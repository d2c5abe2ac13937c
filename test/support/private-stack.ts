import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { parseEnvFile } from '../../core/config';
import { adminUrl } from './global-setup';
import { REPO_ROOT } from './stack';

const run = promisify(execFile);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface PrivateStack {
  dir: string;
  /** The stack script's environment (ports, dirs, databases). */
  scriptEnv: NodeJS.ProcessEnv;
  /** DATABASE_URL, KAFKA_BROKERS, SCHEMA_REGISTRY_URL of this stack (after up). */
  urls(): { DATABASE_URL: string; KAFKA_BROKERS: string; SCHEMA_REGISTRY_URL: string };
  stack(cmd: 'up' | 'down' | 'status'): Promise<{ code: number; out: string }>;
  /** Pid of a server: `kafka` (one broker), `kafka-broker-<i>` and `kafka-controller` (several), `registry`. */
  pidOf(server: string): number;
  /** Stop the servers; remove data and databases unless `keep` (evidence of a failed test). */
  destroy(keep: boolean): Promise<void>;
}

/**
 * A stack of one test file's own — Kafka and the registry (unless `registry: 'shared'`) on free ports, data under
 * .stack/private-<name>, its own registry database — for tests that kill or pause servers without
 * disturbing the shared stack. Downloads are shared with the main stack (STACK_DIST).
 */
/** A free port p such that p + 100*i is free too for every broker i (the stack script's broker ports). */
async function freeBrokerBase(brokers: number): Promise<number> {
  for (;;) {
    const base = await freePort();
    if (base + 100 * (brokers - 1) > 65535) continue;
    const free = await Promise.all(Array.from({ length: brokers - 1 }, (_, i) => portFree(base + 100 * (i + 1))));
    if (free.every(Boolean)) return base;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export async function privateStack(name: string, options: { brokers?: number; registry?: 'own' | 'shared' } = {}): Promise<PrivateStack> {
  const dir = path.join(REPO_ROOT, '.stack', `private-${name}`);
  const brokers = options.brokers ?? 1;
  const scriptEnv: NodeJS.ProcessEnv = {
    ...process.env,
    STACK_DIR: dir,
    STACK_DIST: process.env.STACK_DIST ?? path.join(REPO_ROOT, '.stack'),
    STACK_BROKERS: String(brokers),
    // Seconds each server may take to come up: a busy shared machine needs more than the script's 120.
    STACK_TIMEOUT: process.env.STACK_TIMEOUT ?? '300',
    KAFKA_PORT: String(brokers > 1 ? await freeBrokerBase(brokers) : await freePort()),
    KAFKA_CONTROLLER_PORT: String(await freePort()),
    REGISTRY_PORT: String(await freePort()),
    REGISTRY_MANAGEMENT_PORT: String(await freePort()),
    OUTBOX_DB: `${name}_app`,
    REGISTRY_DB: `${name}_registry`,
    // 'shared': the test run's registry (SCHEMA_REGISTRY_URL) instead of one of its own, for stacks
    // whose faults are all on the Kafka side (one JVM less to start on a busy machine).
    ...(options.registry === 'shared' ? { STACK_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL } : {}),
  };
  const stack = async (cmd: 'up' | 'down' | 'status'): Promise<{ code: number; out: string }> => {
    try {
      const { stdout, stderr } = await run('bash', [path.join(REPO_ROOT, 'infra/stack.sh'), cmd], { env: scriptEnv, timeout: 600_000 });
      return { code: 0, out: stdout + stderr };
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
    }
  };
  return {
    dir,
    scriptEnv,
    stack,
    urls() {
      const env = parseEnvFile(readFileSync(path.join(dir, 'env'), 'utf8'));
      return { DATABASE_URL: env.DATABASE_URL!, KAFKA_BROKERS: env.KAFKA_BROKERS!, SCHEMA_REGISTRY_URL: env.SCHEMA_REGISTRY_URL! };
    },
    pidOf(server) {
      return Number(readFileSync(path.join(dir, 'run', `${server}.pid`), 'utf8').trim());
    },
    async destroy(keep) {
      await stack('down');
      if (keep) return;
      rmSync(dir, { recursive: true, force: true });
      const admin = new pg.Client({ connectionString: adminUrl(process.env.DATABASE_URL!) });
      await admin.connect();
      try {
        for (const db of [scriptEnv.OUTBOX_DB, scriptEnv.REGISTRY_DB]) await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    },
  };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitDead(pid: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
}
