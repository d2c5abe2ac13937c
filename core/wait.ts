import { createBackoff, sleep, type RetryPolicy } from './retry';

export interface WaitForOptions {
  /** Give up after this long: `timedOut()` is thrown. */
  timeoutMs: number;
  /** Between checks: a fixed number of milliseconds, or a policy's backoff (never past the deadline). */
  every: number | RetryPolicy;
  /** The error thrown when the time is up. */
  timedOut: () => Error;
  /** Ends the wait early: waitFor then returns false. */
  signal?: AbortSignal;
}

/**
 * The one polling wait: call `check` until it answers true, waiting `every` between checks; throws
 * `timedOut()` when the answer is still false after `timeoutMs`. Returns true, or false when `signal`
 * aborted the wait.
 */
export async function waitFor(check: () => Promise<boolean>, options: WaitForOptions): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  const backoff = typeof options.every === 'number' ? undefined : createBackoff(options.every);
  for (;;) {
    if (options.signal?.aborted) return false;
    if (await check()) return true;
    if (Date.now() >= deadline) throw options.timedOut();
    const delay = backoff ? backoff.next() : (options.every as number);
    await sleep(Math.min(delay, Math.max(0, deadline - Date.now())), options.signal);
  }
}

/** Wait for `work` to settle, but no longer than `ms` (its outcome is ignored: a close that may hang on a silent peer). */
export async function settleWithin(work: Promise<unknown>, ms: number): Promise<void> {
  const timer = new AbortController();
  await Promise.race([
    work.then(
      () => undefined,
      () => undefined,
    ),
    sleep(ms, timer.signal),
  ]);
  timer.abort();
}
