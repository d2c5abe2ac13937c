import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { uniqueName } from '../support/isolation';
import { isAlive, privateStack, waitDead, type PrivateStack } from '../support/private-stack';

// The stack script's promises, exercised on a private stack (own ports, own data dir, own registry
// database) so the shared stack the other tests use is never disturbed: `up` is idempotent, recovers
// after kill -9 of either server, keeps schema ids across down/up, and `down` leaves nothing running.
const run = promisify(execFile);
const name = uniqueName('stack');
let ps: PrivateStack;
let stackDir: string;
const stack = (cmd: 'up' | 'down' | 'status'): ReturnType<PrivateStack['stack']> => ps.stack(cmd);
const pidOf = (server: 'kafka' | 'registry'): number => ps.pidOf(server);

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
  ps = await privateStack(name);
  stackDir = ps.dir;
});

// Keep data and logs of a failed run as evidence.
afterAll(() => ps.destroy((globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed === true));

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
  expect(envFile).toContain(`KAFKA_BROKERS=127.0.0.1:${ps.scriptEnv.KAFKA_PORT}`);
  expect(envFile).toMatch(/DATABASE_URL=postgres:\/\//);
  const subject = `${name}-value`;
  const id = await registerSchema(registryUrl, subject);
  // A message encoded now (Confluent wire format) must still decode after the restart below.
  const oldMessage = await new SchemaRegistry({ host: registryUrl }).encode(id, { a: 'written before the restart' });

  // kill -9 of Kafka, then of the registry: `up` brings each back.
  for (const server of ['kafka', 'registry'] as const) {
    const pid = pidOf(server);
    process.kill(pid, 'SIGKILL');
    await waitDead(pid);
    expect(isAlive(pid)).toBe(false);
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
  // A fresh client (no cache) decodes the old message by its id.
  expect(await new SchemaRegistry({ host: registryUrl }).decode(oldMessage)).toEqual({ a: 'written before the restart' });

  expect((await stack('down')).code).toBe(0);
  expect(await ourProcesses()).toEqual([]);
}, 600_000);
