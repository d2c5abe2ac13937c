import type { RelaySettings } from '../core/config';
import { errorMessage, isOutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { isRetriable, sleep, type RetryFailure } from '../core/retry';
import type { DeliveryQueue } from './delivery-queue';
import type { EventEncoderPort } from './encode-batch';
import type { Sink } from './kafka-sink';
import { LeaderTerm } from './leader-term';
import { DeliveryPipeline } from './pipeline';
import type { LeadershipPort, RelayObserver } from './relay-ports';
import { failureOf, step } from './relay-step';
import { WorkSignal } from './work-signal';

export interface RelayCycleOptions {
  parts: { leadership: LeadershipPort; queue: DeliveryQueue; encoder: EventEncoderPort; sink: Sink };
  settings: RelaySettings;
  log: Logger;
  observer?: RelayObserver | undefined;
  /** The relay is stopping: waits end, no further batch is prepared. */
  stopping: AbortSignal;
  /** How often a standby tries to take over (default 1000 ms). */
  standbyPollMs?: number | undefined;
  /** How often delivered bookkeeping is cleaned (default 60 s). */
  cleanIntervalMs?: number | undefined;
  /** Topics to create when becoming leader. */
  startupTopics?: string[] | undefined;
  /** Wakes the cycle's idle wait when the outbox notifies new events. */
  wakeups?: { subscribe(wake: () => void): void } | undefined;
}

/**
 * One turn of the relay's loop, put together from the named parts: the leader term (take over, prepare
 * the sink, step down), the delivery pipeline (claim → encode → publish → mark), the periodic clean and
 * the wait for work. A turn that fails throws for the loop's retry; one that finds itself fenced (OutboxError
 * FENCED, from the lock check or the sink) steps down at once, marking nothing, and stands by.
 */
export class RelayCycle {
  private readonly work: WorkSignal;
  private readonly pipeline: DeliveryPipeline;
  private readonly term: LeaderTerm;
  private readonly clean: () => Promise<void>;

  constructor(private readonly options: RelayCycleOptions) {
    const { parts, settings, log, observer, stopping } = options;
    const work = new WorkSignal(stopping);
    options.wakeups?.subscribe(() => work.notify());
    const pipeline = new DeliveryPipeline({ ...parts, settings, log, observer, stopping });
    this.term = new LeaderTerm({
      ...parts,
      log,
      observer,
      startupTopics: options.startupTopics ?? [],
      fallbackOutboxName: settings.instanceId,
      onElected: () => work.notify(),
      onSteppedDown: () => pipeline.forget(),
    });
    this.work = work;
    this.pipeline = pipeline;
    this.clean = periodicClean({ queue: parts.queue, log, intervalMs: options.cleanIntervalMs ?? 60_000, retentionMs: settings.deliveredRetentionMs });
  }

  /** Lead (or stand by), deliver what is pending, clean, and wait for more when there is none. */
  async turn(): Promise<void> {
    const { observer, log } = this.options;
    observer?.heartbeat?.();
    try {
      await this.pipeline.prepareEncoder();
      if (!(await this.term.ensure())) return await this.standBy();
      await this.pipeline.flushUnmarked();
      this.work.consume();
      const more = await this.pipeline.deliver();
      await this.clean();
      if (!more) await this.work.wait(this.options.settings.pollIntervalMs);
    } catch (caught) {
      const { stage, error } = failureOf(caught);
      observer?.failed?.(stage, error);
      if (!isOutboxError(error, 'FENCED')) {
        if (stage === 'publish') this.term.sinkFailed(); // the sink reset itself
        throw caught;
      }
      log.warn({ err: error }, `stepping down: ${error.message}`);
      await this.term.fenced();
      await this.standBy();
    }
  }

  /** The log line of a failed turn before its retry (a warning when the failure is a known transient one). */
  logRetry({ err, attempt, delayMs }: RetryFailure): void {
    const { stage, error } = failureOf(err);
    const transient = isRetriable(error);
    this.options.log[transient ? 'warn' : 'error'](
      { err: error, stage, retryInMs: delayMs, failures: attempt },
      `relay ${stage} failed${transient ? '' : ' (not a known transient failure)'}, retrying in ${delayMs} ms: ${errorMessage(error)}`,
    );
  }

  /** Give up leadership (the parts' connections stay the caller's). */
  close(): Promise<void> {
    return this.term.stepDown();
  }

  private standBy(): Promise<void> {
    return sleep(this.options.standbyPollMs ?? 1000, this.options.stopping);
  }
}

/** Removes delivered bookkeeping past retention, at most once per interval (the first call cleans). */
function periodicClean(options: { queue: DeliveryQueue; log: Logger; intervalMs: number; retentionMs: number }): () => Promise<void> {
  let lastClean = 0;
  return async () => {
    if (Date.now() - lastClean <= options.intervalMs) return;
    lastClean = Date.now();
    const removed = await step('claim', () => options.queue.clean(options.retentionMs));
    if (removed > 0) options.log.info({ removed }, 'removed delivery bookkeeping past retention');
  };
}
