import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { childEnv, emptyEnvFile, REPO } from './run-outbox';

// `outbox relay` as an operator runs it: admin port up (/healthz, /readyz, /metrics with the outbox
// metrics), then SIGTERM stops it cleanly with exit code 0.
const db = useTestDatabase({ poolSize: 1 });

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function waitFor<T>(fn: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('relay: admin port, then SIGTERM → stop() and exit 0', async () => {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(REPO, 'bin/outbox.js'), 'relay'], {
    cwd: REPO,
    env: childEnv({
      OUTBOX_ENV_FILE: emptyEnvFile(),
      DATABASE_URL: db.url,
      KAFKA_BROKERS: process.env.KAFKA_BROKERS!,
      SCHEMA_REGISTRY_URL: process.env.SCHEMA_REGISTRY_URL!,
      OUTBOX_ADMIN_PORT: String(port),
      OUTBOX_TOPIC_SUFFIX: `.${uniqueName('relay')}`,
      OUTBOX_INSTANCE_ID: uniqueName('r'),
      LOG_LEVEL: 'warn',
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  try {
    const ready = await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      return r.status === 200 ? ((await r.json()) as { checks: Record<string, { ok: boolean }> }) : undefined;
    }, 30_000);
    expect(Object.keys(ready.checks).sort()).toEqual(['kafka', 'postgres', 'registry']);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/^outbox_backlog\{component="relay"\} 0$/m);
    expect(metrics).toContain('# TYPE outbox_publish_latency_seconds histogram');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).not.toMatch(/"level":(50|60)/);
  } finally {
    child.kill('SIGKILL');
  }
});
