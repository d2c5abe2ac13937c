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
