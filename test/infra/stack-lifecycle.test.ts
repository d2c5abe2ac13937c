import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { adminUrl } from '../support/global-setup';
import { uniqueName } from '../support/isolation';
import { REPO_ROOT } from '../support/stack';

// The stack script's promises, exercised on a private stack (own ports, own data dir, own registry
// database) so the shared stack the other tests use is never disturbed: `up` is idempotent, recovers
// after kill -9 of either server, keeps schema ids across down/up, and `down` leaves nothing running.
const run = promisify(execFile);
const name = uniqueName('stack');
const stackDir = path.join(REPO_ROOT, '.stack', `private-${name}`);
let env: NodeJS.ProcessEnv;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function stack(cmd: 'up' | 'down' | 'status'): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run('bash', [path.join(REPO_ROOT, 'infra/stack.sh'), cmd], { env, timeout: 180_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

function pidOf(server: 'kafka' | 'registry'): number {
  return Number(readFileSync(path.join(stackDir, 'run', `${server}.pid`), 'utf8').trim());
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitDead(pid: number): Promise<void> {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

async function ourProcesses(): Promise<string[]> {
  try {
    const { stdout } = await run('pgrep', ['-af', stackDir]);
    return stdout.split('\n').filter((l) => l.trim() !== '' && !l.includes('pgrep'));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

async function registerSchema(registryUrl: string, subject: string): Promise<number> {
  const schema = JSON.stringify({ type: 'record', name: 'Keep', namespace: 'stack.test', fields: [{ name: 'a', type: 'string' }] });
  const res = await fetch(`${registryUrl}/subjects/${subject}/versions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ schema, schemaType: 'AVRO' }),
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { id: number }).id;
}

async function latestId(registryUrl: string, subject: string): Promise<number> {
  const res = await fetch(`${registryUrl}/subjects/${subject}/versions/latest`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { id: number }).id;
}

beforeAll(async () => {
  env = {
    ...process.env,
    STACK_DIR: stackDir,
    STACK_DIST: path.join(REPO_ROOT, '.stack'), // reuse the shared stack's downloads
    KAFKA_PORT: String(await freePort()),
    KAFKA_CONTROLLER_PORT: String(await freePort()),
    REGISTRY_PORT: String(await freePort()),
    REGISTRY_MANAGEMENT_PORT: String(await freePort()),
    OUTBOX_DB: `${name}_app`,
    REGISTRY_DB: `${name}_registry`,
  };
});

afterAll(async () => {
  await stack('down');
  if ((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed) return; // keep data and logs as evidence
  rmSync(stackDir, { recursive: true, force: true });
  const admin = new pg.Client({ connectionString: adminUrl(process.env.DATABASE_URL!) });
  await admin.connect();
  try {
    for (const db of [env.OUTBOX_DB, env.REGISTRY_DB]) await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
});

test('up is idempotent, recovers from kill -9, keeps schema ids across down/up, and down stops everything', async () => {
  const first = await stack('up');
  expect(first.out).toContain('stack ready');
  expect(first.code).toBe(0);
  const second = await stack('up');
  expect(second.code).toBe(0);
  expect(second.out).toContain('kafka already running');
  expect(second.out).toContain('registry already running');

  const envFile = readFileSync(path.join(stackDir, 'env'), 'utf8');
  const registryUrl = /SCHEMA_REGISTRY_URL=(.*)/.exec(envFile)?.[1] ?? '';
  expect(envFile).toContain(`KAFKA_BROKERS=127.0.0.1:${env.KAFKA_PORT}`);
  expect(envFile).toMatch(/DATABASE_URL=postgres:\/\//);
  const subject = `${name}-value`;
  const id = await registerSchema(registryUrl, subject);

  // kill -9 of Kafka, then of the registry: `up` brings each back.
  for (const server of ['kafka', 'registry'] as const) {
    const pid = pidOf(server);
    process.kill(pid, 'SIGKILL');
    await waitDead(pid);
    expect((await stack('status')).code).not.toBe(0);
    const recovered = await stack('up');
    expect(recovered.code).toBe(0);
    expect(pidOf(server)).not.toBe(pid);
    expect((await stack('status')).code).toBe(0);
  }

  // Schema ids survive a full restart (the registry stores them in PostgreSQL).
  expect((await stack('down')).code).toBe(0);
  expect(await ourProcesses()).toEqual([]);
  expect(existsSync(path.join(stackDir, 'run', 'kafka.pid'))).toBe(false);
  expect((await stack('up')).code).toBe(0);
  expect(await latestId(registryUrl, subject)).toBe(id);
  expect(await registerSchema(registryUrl, subject)).toBe(id);

  expect((await stack('down')).code).toBe(0);
  expect(await ourProcesses()).toEqual([]);
}, 600_000);
