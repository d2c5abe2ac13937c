import { sleep } from '../core/retry';

/**
 * Whether there is probably work, and the wait for it: the outbox's notifications (and a new leader)
 * raise the flag, a cycle that starts claiming lowers it, and the wait between idle cycles ends early
 * when it is raised (or when the relay stops).
 */
export class WorkSignal {
  private notified = false;
  private wake: (() => void) | null = null;

  constructor(private readonly stopping: AbortSignal) {}

  /** New work may be pending: end the current wait, and skip the next one. */
  notify(): void {
    this.notified = true;
    this.wake?.();
  }

  /** A cycle starts claiming: what was notified so far is being looked at. */
  consume(): void {
    this.notified = false;
  }

  /** Wait up to `ms` unless notified (or stopping). */
  async wait(ms: number): Promise<void> {
    if (this.notified || this.stopping.aborted) return;
    const inner = new AbortController();
    this.wake = () => inner.abort();
    const onAbort = (): void => inner.abort();
    this.stopping.addEventListener('abort', onAbort, { once: true });
    await sleep(ms, inner.signal);
    this.stopping.removeEventListener('abort', onAbort);
    this.wake = null;
  }
}
