import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const REPO = path.resolve(__dirname, '../..');
const BIN = path.join(REPO, 'bin', 'outbox.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Non-empty stderr lines. */
  lines: string[];
}

/** An empty env file, so that the child does not read the checkout's .stack/env. */
export function emptyEnvFile(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-cli-'));
  const file = path.join(dir, 'env');
  writeFileSync(file, '');
  return file;
}

/** A child environment with only PATH/HOME and the given variables (nothing inherited from the test process). */
export function childEnv(vars: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, KAFKA_CONNECTION_TIMEOUT_MS: '1000' };
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) env[k] = v;
  return env;
}

/** Runs `node bin/outbox.js ...args` (in the checkout, or in `cwd`) and collects its output (killed after timeoutMs). */
export function runOutbox(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000, cwd = REPO): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, lines: stderr.split('\n').filter((l) => l.trim() !== '') });
    });
  });
}

/** Runs several invocations at once, at most `parallel` at a time (2 cores shared with others). */
export async function runAll<T extends { args: string[]; env: NodeJS.ProcessEnv }>(cases: T[], parallel = 4): Promise<Array<T & { result: CliResult }>> {
  const out: Array<T & { result: CliResult }> = new Array(cases.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, cases.length) }, async () => {
      while (next < cases.length) {
        const i = next++;
        const c = cases[i]!;
        out[i] = { ...c, result: await runOutbox(c.args, c.env) };
      }
    }),
  );
  return out;
}
