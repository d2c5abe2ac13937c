import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { OutboxError } from '../core/errors';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { redact } from '../core/redact';

/**
 * Long or optional operations the console starts as `outbox` commands in child processes, exactly as an
 * operator would run them: `outbox rebuild <projection>` (a rebuild keeps running while pages are
 * served, and can be followed on the Projections page) and `outbox audit prove` (a proof of inclusion,
 * where checkpoints are configured). The console thus depends only on the commands' documented
 * behaviour, not on the projector's or the audit library's internals.
 */

/** bin/outbox.js of this package (a checkout or an installed package; console/ or dist/console/ below it). */
export function outboxBin(): string {
  for (const p of [path.join(__dirname, '..', 'bin', 'outbox.js'), path.join(__dirname, '..', '..', 'bin', 'outbox.js')]) {
    if (existsSync(p)) return p;
  }
  throw new OutboxError('INTERNAL', 'bin/outbox.js not found next to the console');
}

export interface RebuildProgressLine {
  phase: string;
  processed: number;
  total: number;
  ratio: number;
  eventsPerSecond: number;
  etaSeconds: number | null;
}

export interface RebuildJob {
  id: number;
  projection: string;
  /** Who started it (token name, and the user given with it). */
  by: string;
  startedAt: string;
  pid: number | undefined;
  state: 'running' | 'succeeded' | 'failed';
  finishedAt?: string;
  exitCode?: number | null;
  /** The latest progress line of the command. */
  progress?: RebuildProgressLine;
  /** The result (`--json`) when it succeeded. */
  result?: unknown;
  /** The command's last error line when it failed. */
  error?: string;
}

export interface JobsOptions {
  logger: Logger;
  /** Environment of the children (the console's configuration). */
  env: NodeJS.ProcessEnv;
  /** Default: node + bin/outbox.js. */
  command?: string[];
  /** Time limit of one proof (default 60 s). */
  proofTimeoutMs?: number;
}

const MAX_OUTPUT = 8 * 1024 * 1024;

export class Jobs {
  private readonly jobs: RebuildJob[] = [];
  private readonly children = new Map<number, { child: ChildProcess; exited: Promise<void> }>();
  private seq = 0;
  private proving = false;
  private closed = false;

  constructor(private readonly options: JobsOptions) {}

  private command(args: string[]): { file: string; args: string[] } {
    const [file, ...pre] = this.options.command ?? [process.execPath, outboxBin()];
    return { file: file!, args: [...pre, ...args] };
  }

  private run(args: string[], onStderrLine: (line: string) => void): { child: ChildProcess; done: Promise<{ code: number | null; stdout: string }> } {
    const cmd = this.command(args);
    const child = spawn(cmd.file, cmd.args, { env: this.options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const untrack = trackRunning('process', `outbox ${args[0] ?? ''} pid ${child.pid ?? '?'} (console)`);
    let stdout = '';
    let pending = '';
    child.stdout!.on('data', (d: Buffer) => {
      if (stdout.length < MAX_OUTPUT) stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      pending += d.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (line !== '') onStderrLine(line);
      }
    });
    const done = new Promise<{ code: number | null; stdout: string }>((resolve) => {
      child.on('error', (err) => {
        onStderrLine(`outbox: ${err.message}`);
      });
      child.on('close', (code) => {
        untrack();
        if (pending.trim() !== '') onStderrLine(pending.trim());
        resolve({ code, stdout });
      });
    });
    return { child, done };
  }

  /** Start `outbox rebuild <projection> --json`, unless this console already runs one for it. */
  startRebuild(projection: string, by: string): { started: true; job: RebuildJob } | { started: false; reason: string } {
    if (this.closed) throw new OutboxError('SHUTDOWN', 'the console is stopping');
    if (!/^[a-z][a-z0-9_]*$/.test(projection)) throw new OutboxError('USAGE', `projection must be a projection name, got "${projection}"`);
    const running = this.jobs.find((j) => j.projection === projection && j.state === 'running');
    if (running) return { started: false, reason: `a rebuild of ${projection} started by ${running.by} is still running (since ${running.startedAt})` };
    const job: RebuildJob = { id: ++this.seq, projection, by, startedAt: new Date().toISOString(), pid: undefined, state: 'running' };
    const log = this.options.logger.child({ job: job.id, projection });
    const { child, done } = this.run(['rebuild', projection, '--json'], (line) => {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (parsed.type === 'rebuild_progress') {
          job.progress = parsed as unknown as RebuildProgressLine;
          return;
        }
        if (parsed.level !== undefined && Number(parsed.level) >= 50) job.error = redact(String(parsed.msg ?? line));
        return;
      } catch {
        job.error = redact(line);
      }
    });
    job.pid = child.pid;
    const exited = done.then(({ code, stdout }) => {
      job.exitCode = code;
      job.finishedAt = new Date().toISOString();
      if (code === 0) {
        job.state = 'succeeded';
        delete job.error;
        try {
          job.result = JSON.parse(stdout);
        } catch {
          job.result = stdout.trim();
        }
        log.info({ exitCode: code }, `console: rebuild of ${projection} finished`);
      } else {
        job.state = 'failed';
        log.warn({ exitCode: code, error: job.error }, `console: rebuild of ${projection} failed`);
      }
      this.children.delete(job.id);
    });
    this.children.set(job.id, { child, exited });
    this.jobs.unshift(job);
    if (this.jobs.length > 50) this.jobs.length = 50;
    return { started: true, job };
  }

  rebuilds(): RebuildJob[] {
    return this.jobs.map((j) => ({ ...j }));
  }

  /**
   * `outbox audit prove <type>/<id> --version N --checkpoints <spec>`: the proof (JSON text), or the
   * command's error line. One proof at a time (each reads the checkpoints anew).
   */
  async prove(args: { type: string; id: string; version: number; checkpoints: string }): Promise<{ ok: true; proof: string } | { ok: false; error: string }> {
    if (this.proving) return { ok: false, error: 'another proof is being built; try again in a moment' };
    this.proving = true;
    try {
      const lines: string[] = [];
      const { child, done } = this.run(['audit', 'prove', '--version', String(args.version), '--checkpoints', args.checkpoints, '--', `${args.type}/${args.id}`], (line) =>
        lines.push(line),
      );
      const timer = setTimeout(() => child.kill('SIGTERM'), this.options.proofTimeoutMs ?? 60_000);
      const { code, stdout } = await done.finally(() => clearTimeout(timer));
      if (code === 0 && stdout.trim() !== '') return { ok: true, proof: stdout };
      return { ok: false, error: redact(lines.filter((l) => !l.startsWith('{')).pop() ?? lines.pop() ?? `outbox audit prove exited with ${String(code)}`) };
    } finally {
      this.proving = false;
    }
  }

  /** Stop running rebuilds (SIGTERM: the command stops cleanly; the shadow generation is left for the next rebuild). */
  async close(): Promise<void> {
    this.closed = true;
    const running = [...this.children.values()];
    for (const { child } of running) child.kill('SIGTERM');
    await Promise.all(running.map((r) => r.exited));
  }
}
