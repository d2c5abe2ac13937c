import type { Logger } from '../core/logger';
import type { DeliveryQueue } from './delivery-queue';
import type { Sink } from './kafka-sink';
import type { LeadershipPort, RelayObserver } from './relay-ports';
import { step } from './relay-step';

export interface LeaderTermOptions {
  leadership: LeadershipPort;
  queue: DeliveryQueue;
  sink: Sink;
  log: Logger;
  observer?: RelayObserver | undefined;
  /** Topics to create when becoming leader. */
  startupTopics: string[];
  /** The sink's outbox name when leadership does not know it yet (the instance id). */
  fallbackOutboxName: string;
  /** This instance became the leader (look for work straight away). */
  onElected(): void;
  /** This instance gave up leadership. */
  onSteppedDown(): void;
}

/**
 * This instance's leadership as the loop sees it: take it over when free, prepare the sink for it (again
 * after a failed publish), and give it up when lost or fenced.
 */
export class LeaderTerm {
  private leading = false;
  /** The sink was prepared for this leadership and has not failed since (a failed publish resets it). */
  private sinkReady = false;

  constructor(private readonly options: LeaderTermOptions) {}

  /** Lead, with a prepared sink: true; standing by (another instance leads): false. */
  async ensure(): Promise<boolean> {
    if (!this.leading || !this.options.leadership.isLeader) {
      if (this.leading) {
        this.leading = false;
        await this.stepDown();
        this.options.log.warn('lost leadership; standing by');
      }
      if (!(await this.becomeLeader())) return false;
      this.leading = true;
    }
    if (!this.sinkReady) await this.prepareSink();
    return true;
  }

  /** Another instance took over (OutboxError FENCED): step down at once, marking nothing. */
  async fenced(): Promise<void> {
    this.leading = false;
    await this.stepDown();
  }

  /** A publish failed: the sink reset itself and is prepared again before the next claim. */
  sinkFailed(): void {
    this.sinkReady = false;
  }

  /** Give up leadership. The sink keeps its connections (it reset itself if it failed; prepare claims it again). */
  async stepDown(): Promise<void> {
    this.sinkReady = false;
    const was = this.options.leadership.isLeader;
    await this.options.leadership.release();
    this.options.onSteppedDown();
    if (was) this.options.observer?.leadership?.(false);
  }

  private async becomeLeader(): Promise<boolean> {
    const { leadership, queue, observer, log } = this.options;
    if (!(await step('leadership', () => leadership.tryAcquire()))) return false;
    observer?.leadership?.(true);
    log.info('became the active relay');
    try {
      // A backlog may have built up while no relay ran: plan the claims with fresh statistics.
      await step('claim', () => queue.analyze());
      await this.prepareSink();
    } catch (err) {
      await this.stepDown();
      throw err;
    }
    this.options.onElected();
    return true;
  }

  /**
   * Claim the destination for this leader (a transactional sink fences the previous leader here). Runs
   * before the lock check of the next claim, so a relay that lost its lock meanwhile never publishes
   * after fencing its successor.
   */
  private async prepareSink(): Promise<void> {
    this.sinkReady = false;
    const { sink, leadership } = this.options;
    await step('publish', () => sink.prepare({ topics: this.options.startupTopics, outboxName: leadership.outboxName ?? this.options.fallbackOutboxName }));
    this.sinkReady = true;
  }
}
