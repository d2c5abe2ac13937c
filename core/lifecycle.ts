/**
 * A process-wide registry of running long-lived components (relays, projectors, child processes).
 * Components register on start and unregister on stop, so a host (the CLI, the test harness) can tell
 * what is still running. The registry lives on globalThis so that a test environment can inspect it.
 */
export interface RunningComponent {
  kind: string;
  id: string;
  startedAt: Date;
}

const KEY = '__kafkaOutboxRunning';
type Store = Map<string, RunningComponent>;

function store(): Store {
  const g = globalThis as unknown as Record<string, Store | undefined>;
  let s = g[KEY];
  if (!s) {
    s = new Map();
    g[KEY] = s;
  }
  return s;
}

let seq = 0;

/** Record a started component; call the returned function when it has stopped. */
export function trackRunning(kind: string, id: string): () => void {
  const key = `${kind}:${id}:${++seq}`;
  store().set(key, { kind, id, startedAt: new Date() });
  return () => {
    store().delete(key);
  };
}

export function runningComponents(): RunningComponent[] {
  return [...store().values()];
}

/** What /healthz reports about a component's main loop. */
export interface LivenessStatus {
  ok: boolean;
  /** Milliseconds since the loop last went round (or since tracking began, before the first round). */
  sinceProgressMs: number;
  timeoutMs: number;
}

/**
 * Liveness of a long-running component: its main loop calls `beat()` each time it goes round (the relay
 * through its observer's `heartbeat`, the projector on every fetch and consumer heartbeat). `check()` is
 * not ok once no beat came for `timeoutMs`: the loop is stuck (a call that never returns, a deadlock),
 * which a restart cures. A dependency being down is not a liveness failure: the loops keep going round
 * while they retry (that is readiness).
 */
export interface Liveness {
  beat(): void;
  check(): LivenessStatus;
}

export function createLiveness(options: { timeoutMs: number; now?: () => number }): Liveness {
  const now = options.now ?? Date.now;
  let last = now();
  return {
    beat() {
      last = now();
    },
    check() {
      const sinceProgressMs = Math.max(0, now() - last);
      return { ok: sinceProgressMs <= options.timeoutMs, sinceProgressMs, timeoutMs: options.timeoutMs };
    },
  };
}
