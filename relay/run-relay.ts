import type { RelaySettings } from '../core/config';
import { errorMessage, isOutboxError } from '../core/errors';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { createBackoff, isRetriable, sleep } from '../core/retry';
import type { DeliveryQueue } from './delivery-queue';
import type { EventEncoderPort } from './encode-batch';
import type { Sink } from './kafka-sink';
import { LeaderTerm } from './leader-term';
import { DeliveryPipeline } from './pipeline';
import type { LeadershipPort, RelayObserver } from './relay-ports';
import { failureOf, step, type RelayStage } from './relay-step';
import { WorkSignal } from './work-signal';

export type { LeadershipPort, RelayObserver } from './relay-ports';
export type { RelayStage } from './relay-step';

/** The named parts of a relay; the loop owns none of their resources (`close` is the caller's). */
export interface RelayParts {
  leadership: LeadershipPort;
  queue: DeliveryQueue;
  encoder: EventEncoderPort;
  sink: Sink;
}

export interface RelayOptions {
  parts: RelayParts;
  settings: RelaySettings;
  logger: Logger;
  observer?: RelayObserver;
  /** How often a standby tries to take over (default 1000 ms). */
  standbyPollMs?: number;
  /** How often delivered bookkeeping is cleaned (default 60 s). */
  cleanIntervalMs?: number;
  /** Topics to create when becoming leader (those of the aggregate types the schema catalog knows). */
  startupTopics?: string[];
  /** Wakes the loop when the outbox notifies new events (wire it to leadership's NOTIFY). */
  wakeups?: { subscribe(wake: () => void): void };
  /** Called once the loop has ended (release the parts' resources here). */
  onStopped?(): Promise<void>;
}

export interface RelayHandle {
  /** Finish the in-flight batch, release leadership and connections. */
  stop(): Promise<void>;
  /** Settles when the relay has stopped. */
  readonly done: Promise<void>;
  readonly isLeader: () => boolean;
}

/**
 * The publishing loop: become leader, then repeatedly claim the oldest pending events, encode them
 * through the registry's schemas, publish them to the sink, and record the deliveries. Before each
 * claim the leader confirms it still holds leadership. A failure backs off with jitter and retries
 * (core/retry.ts decides what is transient); losing leadership (OutboxError FENCED, from the lock check
 * or from the sink) steps down at once, without marking anything. Nothing is marked delivered before
 * the sink acknowledged it, so nothing is lost (at-least-once; a re-publish carries the same event_id).
 */
export function runRelay(options: RelayOptions): RelayHandle {
  const { parts, settings, observer } = options;
  const log = options.logger.child({ component: 'relay', instance: settings.instanceId });
  const stopping = new AbortController();
  const untrack = trackRunning('relay', settings.instanceId);
  const work = new WorkSignal(stopping.signal);
  options.wakeups?.subscribe(() => work.notify());
  const pipeline = new DeliveryPipeline({ ...parts, settings, log, observer, stopping: stopping.signal });
  const term = new LeaderTerm({
    ...parts,
    log,
    observer,
    startupTopics: options.startupTopics ?? [],
    fallbackOutboxName: settings.instanceId,
    onElected: () => work.notify(),
    onSteppedDown: () => pipeline.forget(),
  });
  const clean = periodicClean({ queue: parts.queue, log, intervalMs: options.cleanIntervalMs ?? 60_000, retentionMs: settings.deliveredRetentionMs });
  const standBy = (): Promise<void> => sleep(options.standbyPollMs ?? 1000, stopping.signal);

  async function loop(): Promise<void> {
    const backoff = createBackoff();
    while (!stopping.signal.aborted) {
      observer?.heartbeat?.();
      try {
        await pipeline.prepareEncoder();
        if (!(await term.ensure())) {
          await standBy();
          continue;
        }
        await pipeline.flushUnmarked();
        work.consume();
        const more = await pipeline.deliver();
        backoff.reset();
        await clean();
        if (!more) await work.wait(settings.pollIntervalMs);
      } catch (caught) {
        const { stage, error } = failureOf(caught);
        observer?.failed?.(stage, error);
        if (isOutboxError(error, 'FENCED')) {
          log.warn({ err: error }, `stepping down: ${error.message}`);
          await term.fenced();
          await standBy();
          continue;
        }
        if (stage === 'publish') term.sinkFailed(); // the sink reset itself
        await sleep(retryDelay({ backoff, stage, error, log }), stopping.signal);
      }
    }
  }

  const done = loop()
    .catch((err) => {
      log.fatal({ err }, 'relay loop crashed');
      throw err;
    })
    .finally(async () => {
      await term.stepDown().catch(() => undefined);
      await options.onStopped?.();
      untrack();
      log.info('relay stopped');
    });

  return {
    async stop() {
      stopping.abort();
      await done.catch(() => undefined);
    },
    done,
    isLeader: () => parts.leadership.isLeader,
  };
}

/** The next back-off delay for a failed step, logged (a warning when the failure is a known transient one). */
function retryDelay(failure: { backoff: ReturnType<typeof createBackoff>; stage: RelayStage; error: unknown; log: Logger }): number {
  const { backoff, stage, error, log } = failure;
  const delay = backoff.next();
  const transient = isRetriable(error);
  log[transient ? 'warn' : 'error'](
    { err: error, stage, retryInMs: delay, failures: backoff.failures },
    `relay ${stage} failed${transient ? '' : ' (not a known transient failure)'}, retrying in ${delay} ms: ${errorMessage(error)}`,
  );
  return delay;
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
