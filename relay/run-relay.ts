import type { RelaySettings } from '../core/config';
import { isOutboxError } from '../core/errors';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { retry } from '../core/retry';
import type { DeliveryQueue } from './delivery-queue';
import type { EventEncoderPort } from './encode-batch';
import type { Sink } from './kafka-sink';
import { RelayCycle } from './relay-cycle';
import type { LeadershipPort, RelayObserver } from './relay-ports';

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
 * through the registry's schemas, publish them to the sink, and record the deliveries (one RelayCycle
 * turn). Before each claim the leader confirms it still holds leadership. A failed turn is retried with
 * the standard policy (core/retry.ts; a known transient failure is logged as a warning, anything else
 * as an error, and retried too); losing leadership (OutboxError FENCED) steps down at once, without
 * marking anything. Nothing is marked delivered before the sink acknowledged it, so nothing is lost
 * (at-least-once; a re-publish carries the same event_id). The loop owns no resources: leadership is
 * released by the cycle's close, the parts' connections by `onStopped`.
 */
export function runRelay(options: RelayOptions): RelayHandle {
  const { parts, settings } = options;
  const log = options.logger.child({ component: 'relay', instance: settings.instanceId });
  const stopping = new AbortController();
  const untrack = trackRunning('relay', settings.instanceId);
  const cycle = new RelayCycle({ ...options, log, stopping: stopping.signal });

  async function loop(): Promise<void> {
    while (!stopping.signal.aborted) {
      await retry(() => cycle.turn(), { retryIf: () => true, signal: stopping.signal, onRetry: (failure) => cycle.logRetry(failure) }).catch((err: unknown) => {
        if (!isOutboxError(err, 'SHUTDOWN')) throw err;
      });
    }
  }

  const done = loop()
    .catch((err) => {
      log.fatal({ err }, 'relay loop crashed');
      throw err;
    })
    .finally(async () => {
      await cycle.close().catch(() => undefined);
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
