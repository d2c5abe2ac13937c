/** CPU time and memory of one process, read from /proc (Linux). */
import { readFileSync } from 'node:fs';

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
