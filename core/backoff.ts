/** Delay before retry number `attempt` (1, 2, ...): exponential from `initialMs`, capped at `maxMs`, with jitter (half to full). */
export function backoffDelay(attempt: number, initialMs = 100, maxMs = 10_000, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(attempt, 1) - 1, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** Exponential backoff with jitter that counts its own failures (see backoffDelay). */
export interface Backoff {
  /** Delay before the next attempt (and count the failure). */
  next(): number;
  reset(): void;
  readonly failures: number;
}

export function createBackoff(initialMs = 100, maxMs = 10_000, random: () => number = Math.random): Backoff {
  let failures = 0;
  return {
    next() {
      failures += 1;
      return backoffDelay(failures, initialMs, maxMs, random);
    },
    reset() {
      failures = 0;
    },
    get failures() {
      return failures;
    },
  };
}

/** Resolve after `ms`, or earlier when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
