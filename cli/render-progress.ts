/**
 * Progress of a long operation (a rebuild) on stderr: a redrawn bar with events/s and ETA when stderr
 * is a terminal, one JSON line per update otherwise (for logs and scripts). Results stay on stdout.
 */
export interface ProgressUpdate {
  phase: string;
  processed: number;
  total: number;
  eventsPerSecond: number;
  etaSeconds: number | null;
  ratio: number;
}

export interface ProgressRenderer {
  update(p: ProgressUpdate): void;
  done(): void;
}

export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** One line of the terminal bar, e.g. `catching_up [########------------] 40%  12,000/30,000  8,512 ev/s  ETA 2s`. */
export function progressBar(p: ProgressUpdate, width = 30): string {
  const ratio = Math.min(1, Math.max(0, p.ratio));
  const filled = Math.round(ratio * width);
  const n = (x: number): string => Math.round(x).toLocaleString('en-US');
  return `${p.phase.padEnd(11)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(ratio * 100)).padStart(3)}%  ${n(p.processed)}/${n(p.total)}  ${n(p.eventsPerSecond)} ev/s  ETA ${formatDuration(p.etaSeconds)}`;
}

export function createProgressRenderer(stream: NodeJS.WriteStream = process.stderr, label = 'progress'): ProgressRenderer {
  const tty = stream.isTTY === true;
  let drawn = false;
  return {
    update(p) {
      if (tty) {
        stream.write(`\r${progressBar(p)}\u001b[K`);
        drawn = true;
      } else {
        stream.write(
          `${JSON.stringify({ type: label, phase: p.phase, processed: p.processed, total: p.total, ratio: Number(p.ratio.toFixed(4)), eventsPerSecond: Math.round(p.eventsPerSecond), etaSeconds: p.etaSeconds === null ? null : Math.round(p.etaSeconds) })}\n`,
        );
      }
    },
    done() {
      if (tty && drawn) stream.write('\n');
    },
  };
}
