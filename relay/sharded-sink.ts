import { OutboxError } from '../core/errors';
import type { PublishOutcome, Sink } from './kafka-sink';
import type { EncodedEvent } from './publish-batch';

export interface ShardedSinkOptions {
  /** A sink of its own for one shard, fenced by `transactionalId` (a transactional KafkaSink). */
  sinkFor(options: { shard: number; transactionalId: string }): Sink;
  /** The transactional.id of the relays of this outbox (kafka-sink.ts relayTransactionalId); shard n's is `<base>.shard-<n>`. */
  baseTransactionalId(outboxName: string): string;
}

/**
 * The destination of a sharded, transactional relay: one transactional producer per owned shard, its
 * transactional.id `<base>.shard-<n>`, so a shard's new owner fences the producer of its previous owner
 * (a zombie that lost the shard's lock gets PRODUCER_FENCED) while the other shards publish on. A
 * batch is split by shard and each part is one transaction on its shard's producer, all at once.
 * `take` claims the producers of newly owned shards (relay/own-shards.ts onAcquired), `drop` closes
 * those of shards given up; `prepare` (a new membership, or after a failed publish) claims them all
 * again for the shards owned now. `prepare`, `take`, `drop` and `reset` run one at a time (the shard
 * owner's rebalance timer takes shards while the relay loop may be preparing the sink).
 */
export class ShardedSink implements Sink {
  private readonly sinks = new Map<number, Sink>();
  private topics: string[] = [];
  private outboxName: string | undefined;
  /** The tail of the prepare/take/drop/reset chain. */
  private serial: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly options: ShardedSinkOptions,
    private readonly owned: () => readonly number[],
  ) {}

  /** Run `work` after every earlier prepare/take/drop/reset has settled. */
  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.serial.then(work, work);
    this.serial = run.catch(() => undefined);
    return run;
  }

  prepare(options: { topics: string[]; outboxName: string }): Promise<void> {
    return this.exclusive(async () => {
      this.topics = options.topics;
      this.outboxName = options.outboxName;
      // Shards taken just now (not yet among the owned ones) are claimed again too.
      const shards = [...new Set([...this.owned(), ...this.sinks.keys()])];
      await this.dropNow([...this.sinks.keys()]);
      await this.takeNow(shards);
    });
  }

  /** Claim the producers of these shards (fences their previous owners). */
  take(shards: number[]): Promise<void> {
    return this.exclusive(() => this.takeNow(shards));
  }

  private async takeNow(shards: number[]): Promise<void> {
    const outboxName = this.outboxName;
    if (outboxName === undefined) throw new OutboxError('INTERNAL', 'the sharded sink takes shards only after prepare');
    const base = this.options.baseTransactionalId(outboxName);
    const results = await Promise.allSettled(
      shards.map(async (shard) => {
        await this.sinks.get(shard)?.reset();
        const sink = this.options.sinkFor({ shard, transactionalId: `${base}.shard-${shard}` });
        this.sinks.set(shard, sink);
        await sink.prepare({ topics: this.topics, outboxName });
      }),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await this.dropNow(shards);
      throw failed.reason;
    }
  }

  drop(shards: number[]): Promise<void> {
    return this.exclusive(() => this.dropNow(shards));
  }

  private async dropNow(shards: number[]): Promise<void> {
    await Promise.allSettled(
      shards.map(async (shard) => {
        const sink = this.sinks.get(shard);
        this.sinks.delete(shard);
        await sink?.reset();
      }),
    );
  }

  async publish(batch: EncodedEvent[]): Promise<PublishOutcome> {
    const parts = new Map<number, EncodedEvent[]>();
    for (const e of batch) {
      const shard = e.event.shard;
      if (shard === undefined || !this.sinks.has(shard)) {
        throw new OutboxError('INTERNAL', `event ${e.event.eventId} of shard ${shard ?? '?'} was claimed, but this relay has no producer for that shard`);
      }
      const part = parts.get(shard) ?? [];
      part.push(e);
      parts.set(shard, part);
    }
    const results = await Promise.allSettled([...parts].map(([shard, part]) => this.sinks.get(shard)!.publish(part)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      // What other shards committed is published; not marked, it is published again (same event ids).
      const fenced = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && r.reason instanceof OutboxError && r.reason.code === 'FENCED');
      await this.reset();
      throw (fenced ?? failed).reason;
    }
    const outcome: PublishOutcome = { deliveries: [], refused: [] };
    for (const r of results) {
      const o = (r as PromiseFulfilledResult<PublishOutcome>).value;
      outcome.deliveries.push(...o.deliveries);
      outcome.refused.push(...o.refused);
    }
    return outcome;
  }

  reset(): Promise<void> {
    return this.exclusive(() => this.dropNow([...this.sinks.keys()]));
  }
}
