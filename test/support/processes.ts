import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { trackRunning } from '../../core/lifecycle';
import { REPO_ROOT } from './stack';

export interface Child {
  proc: ChildProcess;
  pid: number;
  output: () => string;
  /** Resolves when a line matching `pattern` appears on stdout (or rejects after timeoutMs). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<number | null>;
}

/**
 * Run a TypeScript entry point (relative to the repo) in a child process through tsx. The child is
 * registered as a running component until it exits, so a test file that forgets one fails.
 */
export function spawnTs(entry: string, env: NodeJS.ProcessEnv, args: string[] = []): Child {
  return spawnProcess({ label: entry, file: process.execPath, args: ['--require', 'tsx/cjs', path.join(REPO_ROOT, entry), ...args], cwd: REPO_ROOT, env });
}

/**
 * Run any program in a child process (an installed bin, `node server.js` in a project of its own),
 * registered as a running component until it exits, like spawnTs.
 */
export function spawnProcess(options: { label: string; file: string; args: string[]; cwd: string; env: NodeJS.ProcessEnv }): Child {
  const { label } = options;
  const proc = spawn(options.file, options.args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const untrack = trackRunning('process', `${label} pid ${proc.pid}`);
  let out = '';
  const listeners = new Set<() => void>();
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    proc.on('exit', (code) => {
      untrack();
      resolve(code);
    }),
  );
  return {
    proc,
    pid: proc.pid!,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (pattern.test(out)) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`timed out waiting for ${pattern} in output of ${label}:\n${out.slice(-2000)}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}

/** SIGTERM a child and wait until it has exited; its exit code (null when a signal ended it). */
export async function stopGracefully(child: Child): Promise<number | null> {
  if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGTERM');
  return child.exited;
}

/** SIGKILL a child and wait until it is gone. */
export async function killHard(child: Child): Promise<void> {
  if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
  await child.exited;
}
