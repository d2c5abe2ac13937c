import type { RelaySettings } from '../core/config';
import type { Logger } from '../core/logger';
import type { PendingEvent } from './claim-batch';
import type { DeliveryQueue } from './delivery-queue';
import { encodeBatch, type EventEncoderPort } from './encode-batch';
import type { Sink } from './kafka-sink';
import type { Delivery } from './mark-delivered';
import type { EncodedEvent } from './publish-batch';
import type { LeadershipPort, RelayObserver } from './relay-ports';
import { step } from './relay-step';

export interface PipelineOptions {
  leadership: Pick<LeadershipPort, 'verify' | 'verifyShapesClaim'>;
  queue: DeliveryQueue;
  encoder: EventEncoderPort;
  sink: Sink;
  settings: RelaySettings;
  log: Logger;
  observer?: RelayObserver | undefined;
  /** The relay is stopping: prepare no further batch. */
  stopping: AbortSignal;
}

/** A claimed and encoded batch, ready to publish. */
interface Prepared {
  claimed: number;
  /** The claim stopped at a limit (count or bytes): more events are probably pending. */
  full: boolean;
  encoded: EncodedEvent[];
}

const NOTHING: Prepared = { claimed: 0, full: false, encoded: [] };

/**
 * Claim → encode → publish → mark, pipelined while there is a full batch of work: the next batch is
 * claimed and encoded while the current one is being sent, but it is sent only after the current one
 * was acknowledged (one send in flight), so an aggregate's events reach the partition in order. If a
 * send fails, the prepared next batch is dropped and everything unacknowledged is claimed again. A
 * failure of the next batch's preparation while the current one is sent is awaited with the send and
 * thrown to the loop (never left unhandled). Deliveries the sink acknowledged but that could not be
 * marked are kept and marked first thing next cycle (`flushUnmarked`).
 */
export class DeliveryPipeline {
  private unmarked: Delivery[] = [];
  private encoderReady = false;

  constructor(private readonly options: PipelineOptions) {}

  /** Register the schemas once (standbys too: it makes a handover short). */
  async prepareEncoder(): Promise<void> {
    if (this.encoderReady) return;
    await step('encode', () => this.options.encoder.prepare());
    this.encoderReady = true;
  }

  /** Record what was acknowledged but not yet marked. */
  async flushUnmarked(): Promise<void> {
    if (this.unmarked.length === 0) return;
    const pendingMarks = this.unmarked;
    await step('mark', () => this.options.queue.mark(pendingMarks));
    this.unmarked = [];
  }

  /** Leadership ended: acknowledged deliveries are no longer ours to mark (they will be published again). */
  forget(): void {
    this.unmarked = [];
  }

  /** Deliver batches while claims come back full. Returns whether the last claim was full (more work is probably pending). */
  async deliver(): Promise<boolean> {
    let current = await this.prepare([]);
    while (current.claimed > 0) {
      if (current.encoded.length === 0) {
        // Every claimed event was poison (parked, or held behind its aggregate's parked event).
        if (!current.full || this.options.stopping.aborted) break;
        current = await this.prepare([]);
        continue;
      }
      const next = await this.send(current);
      if (next === undefined) return false;
      current = next;
    }
    return current.full;
  }

  /**
   * Publish one batch while the next one is prepared, mark it, park what the sink refused. Returns the
   * next batch, or undefined when this one's claim was not full.
   */
  private async send(current: Prepared): Promise<Prepared | undefined> {
    const { encoded: batch, full } = current;
    const { sink, queue, stopping } = this.options;
    const sending = step('publish', () => sink.publish(batch));
    const more = full && !stopping.aborted;
    const nextPrepared = more ? this.prepare(batch.map((e) => e.event.id)) : Promise.resolve(NOTHING);
    nextPrepared.catch(() => undefined); // awaited after the send; failing before that is not an unhandled rejection
    let outcome: Awaited<typeof sending>;
    try {
      outcome = await sending;
    } catch (err) {
      await nextPrepared.catch(() => undefined);
      throw err;
    }
    const ackedAt = Date.now();
    const { deliveries } = outcome;
    const marking = step('mark', () => queue.mark(deliveries)).catch((err: unknown) => {
      this.unmarked = deliveries; // acknowledged by the sink: recorded first thing next cycle
      throw err;
    });
    const settled = await Promise.allSettled([marking, nextPrepared]);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
    for (const r of outcome.refused) await this.park(r.event, r.reason);
    this.reportPublished(batch, deliveries, ackedAt);
    if (!full) return undefined;
    // The next batch was claimed before a refused event's aggregate was parked, so it may hold that
    // aggregate's later events: claim it again (events the sink held back are pending anyway).
    return outcome.refused.length > 0 ? await this.prepare([]) : (settled[1] as PromiseFulfilledResult<Prepared>).value;
  }

  /**
   * Confirm leadership and claim the oldest pending events (except those in flight), at once unless the
   * check decides what may be claimed; encode them, park the poison.
   */
  private async prepare(inFlight: string[]): Promise<Prepared> {
    const { leadership, queue, encoder, settings, log } = this.options;
    const verifying = step('leadership', () => leadership.verify());
    if (leadership.verifyShapesClaim) await verifying;
    const claimStarted = Date.now();
    let claimMs = 0;
    const claiming = step('claim', () => queue.claim(inFlight)).finally(() => (claimMs = Date.now() - claimStarted));
    // The check's outcome is looked at first: a relay that is no longer leader publishes nothing it claimed.
    const [verified, claimed] = await Promise.allSettled([verifying, claiming]);
    if (verified.status === 'rejected') throw verified.reason;
    if (claimed.status === 'rejected') throw claimed.reason;
    const { events: batch, full } = claimed.value;
    if (queue.analysisDue({ ms: claimMs, full })) {
      log.info({ claimMs }, 'slow claim of a full batch: refreshing the delivery queue statistics');
      await step('claim', () => queue.analyze());
    }
    if (batch.length === 0) return NOTHING;
    const { encoded, poison } = await step('encode', () => encodeBatch(encoder, batch, settings));
    for (const p of poison) await this.park(p.event, p.reason);
    return { claimed: batch.length, full, encoded };
  }

  private async park(event: PendingEvent, reason: string): Promise<void> {
    await step('mark', () => this.options.queue.park(event.id, reason));
    this.options.log.error(
      { eventId: event.eventId, aggregateType: event.aggregateType, aggregateId: event.aggregateId, aggregateVersion: event.aggregateVersion, reason },
      `parked event ${event.eventId}: ${reason}`,
    );
    this.options.observer?.parked?.(event.eventId, reason);
  }

  private reportPublished(batch: EncodedEvent[], deliveries: Delivery[], ackedAt: number): void {
    const acked = new Set(deliveries.map((d) => d.id));
    const published = batch.filter((e) => acked.has(e.event.id));
    this.options.observer?.published?.(
      deliveries.length,
      published.map((e) => ackedAt - e.event.occurredAt.getTime()),
      published.map((e) => e.topic),
    );
  }
}
