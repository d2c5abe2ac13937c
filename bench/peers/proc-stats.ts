/** CPU time and memory of one process, read from /proc (Linux). */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on Linux). */
const TICKS = 100;

/** User + system CPU seconds the process has used so far (its own threads; not its children). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the command name (which may contain spaces, so split after the closing parenthesis)
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / TICKS;
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

export const rssMiB = (pid: number): number => statusKb(pid, 'VmRSS') / 1024;
/** The process's peak resident set size since it started (the kernel's high-water mark). */
export const peakRssMiB = (pid: number): number => statusKb(pid, 'VmHWM') / 1024;

export interface Sampler {
  /** Largest RSS seen since the sampler started (or since the last `reset`), MiB. */
  peakMiB(): number;
  reset(): void;
  stop(): void;
}

/** Samples the process's RSS every `everyMs` (the peak of a phase, unlike VmHWM which covers the whole life). */
export function sampleRss(pid: number, everyMs = 100): Sampler {
  let peak = 0;
  const tick = (): void => {
    try {
      peak = Math.max(peak, rssMiB(pid));
    } catch {
      /* the process is gone */
    }
  };
  tick();
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return {
    peakMiB: () => {
      tick();
      return Math.round(peak);
    },
    reset: () => {
      peak = 0;
      tick();
    },
    stop: () => clearInterval(timer),
  };
}

/** Pids of every running process, with its parent pid and command line. */
function processTable(): Array<{ pid: number; ppid: number; cmdline: string }> {
  const out: Array<{ pid: number; ppid: number; cmdline: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      out.push({ pid: Number(entry), ppid, cmdline: readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ') });
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** The process and all its descendants now (a PostgreSQL postmaster and its backends). */
export function processTree(root: number): number[] {
  const table = processTable();
  const tree = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const p of table) {
      if (!tree.has(p.pid) && tree.has(p.ppid)) {
        tree.add(p.pid);
        grew = true;
      }
    }
  }
  return [...tree];
}

/** The first process whose command line matches. */
export function findProcess(pattern: RegExp): number | undefined {
  return processTable().find((p) => pattern.test(p.cmdline))?.pid;
}

/** The Kafka broker's process on this machine (the local stack's), if there is one. */
export const brokerPid = (): number | undefined => findProcess(/kafka\.Kafka /);

/** Seconds per 100,000 events, two decimals. */
export const per100k = (seconds: number, events: number): number => Number(((seconds / Math.max(1, events)) * 100_000).toFixed(2));

/**
 * CPU seconds used by a changing set of processes between `start()` and `stop()`: processes that exist
 * at either moment count (a backend that started and ended in between is missed: PostgreSQL's are
 * per connection and live as long as the relay's pool).
 */
export function cpuMeter(pids: () => number[]): { stop(): number } {
  const read = (): Map<number, number> => {
    const m = new Map<number, number>();
    for (const pid of pids()) {
      try {
        m.set(pid, cpuSeconds(pid));
      } catch {
        /* gone */
      }
    }
    return m;
  };
  const before = read();
  return {
    stop: () => {
      let total = 0;
      for (const [pid, seconds] of read()) total += seconds - (before.get(pid) ?? 0);
      return total;
    },
  };
}
