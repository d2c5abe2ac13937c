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
 * The kafkajs client retry of the shard producers (createKafka options). kafkajs retries a
 * transactional producer's coordinator requests (InitProducerId, AddPartitionsToTxn, EndTxn) with the
 * client's retry, not the producer's. A shard's new owner's InitProducerId is answered
 * CONCURRENT_TRANSACTIONS while the coordinator aborts the dead owner's open transaction (tens of ms);
 * with the client default (200 ms doubling to 5 s, 5 retries) the new owner then waited seconds, or gave
 * up and unlocked the shard. Here: 50 ms doubling to 500 ms, 30 retries (about 14 s in all, as the Java
 * client's flat 100 ms retry within its 60 s max.block.ms).
 */
export const SHARD_PRODUCER_RETRY = { retries: 30, initialRetryTimeMs: 50, maxRetryTimeMs: 500 } as const;

/**
 * The destination of a sharded, transactional relay: one transactional producer per owned shard, its
 * transactional.id `<base>.shard-<n>`, so a shard's new owner fences the producer of its previous owner
 * (a zombie that lost the shard's lock gets PRODUCER_FENCED) while the other shards publish on. A
 * batch is split by shard and each part is one transaction on its shard's producer, all at once.
 * `take` claims the producers of newly owned shards (relay/own-shards.ts onAcquired), `drop` closes
 * those of shards given up; `prepare` (a new membership, or after a failed publish) claims the
 * producers of the shards owned now that have none (a failed publish drops only the producers of the
 * shards whose part failed: the others keep theirs, and the shards taken meanwhile are not held up).
 * Work on one shard's producer runs one step at a time (the shard owner's rebalance timer takes shards
 * while the relay loop may be preparing the sink); different shards' go on at once.
 */
export class ShardedSink implements Sink {
  private readonly sinks = new Map<number, Sink>();
  private topics: string[] = [];
  private outboxName: string | undefined;
  /** Per shard, the tail of its take/drop chain. */
  private readonly chains = new Map<number, Promise<unknown>>();

  constructor(
    private readonly options: ShardedSinkOptions,
    private readonly owned: () => readonly number[],
  ) {}

  /** Run `work` on `shard`'s producer after every earlier step on it has settled. */
  private onShard<T>(shard: number, work: () => Promise<T>): Promise<T> {
    const run = (this.chains.get(shard) ?? Promise.resolve()).then(work, work);
    const tail = run.catch(() => undefined);
    this.chains.set(shard, tail);
    void tail.then(() => {
      if (this.chains.get(shard) === tail) this.chains.delete(shard);
    });
    return run;
  }

  async prepare(options: { topics: string[]; outboxName: string }): Promise<void> {
    const renamed = this.outboxName !== undefined && this.outboxName !== options.outboxName;
    this.topics = options.topics;
    this.outboxName = options.outboxName;
    // Shards taken just now (not yet among the owned ones) are claimed too; a producer for another outbox name goes.
    const shards = [...new Set([...this.owned(), ...this.sinks.keys()])];
    await this.takeAll(shards, { keep: !renamed });
  }

  /** Claim the producers of these shards (fences their previous owners); if one fails, none is kept (the owner unlocks them all). */
  async take(shards: number[]): Promise<void> {
    try {
      await this.takeAll(shards, { keep: false });
    } catch (err) {
      await this.drop(shards);
      throw err;
    }
  }

  /** Claim each shard's producer anew (`keep`: a shard that has one keeps it); a shard whose claim fails has none, and the first failure is thrown. */
  private async takeAll(shards: number[], { keep }: { keep: boolean }): Promise<void> {
    const outboxName = this.outboxName;
    if (outboxName === undefined) throw new OutboxError('INTERNAL', 'the sharded sink takes shards only after prepare');
    const base = this.options.baseTransactionalId(outboxName);
    const results = await Promise.allSettled(
      shards.map((shard) =>
        this.onShard(shard, async () => {
          if (keep && this.sinks.has(shard)) return;
          const old = this.sinks.get(shard);
          this.sinks.delete(shard);
          await old?.reset();
          const sink = this.options.sinkFor({ shard, transactionalId: `${base}.shard-${shard}` });
          try {
            await sink.prepare({ topics: this.topics, outboxName });
          } catch (err) {
            await sink.reset().catch(() => undefined);
            throw err;
          }
          this.sinks.set(shard, sink);
        }),
      ),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  async drop(shards: number[]): Promise<void> {
    await Promise.allSettled(
      shards.map((shard) =>
        this.onShard(shard, async () => {
          const sink = this.sinks.get(shard);
          this.sinks.delete(shard);
          await sink?.reset();
        }),
      ),
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
    const shards = [...parts.keys()];
    const results = await Promise.allSettled(shards.map((shard) => this.sinks.get(shard)!.publish(parts.get(shard)!)));
    const failedShards = shards.filter((_, i) => results[i]!.status === 'rejected');
    if (failedShards.length > 0) {
      // What other shards committed is published; not marked, it is published again (same event ids).
      // Only the failed shards' producers go (a failed KafkaSink reset itself); prepare claims them again.
      const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      const fenced = failures.find((r) => r.reason instanceof OutboxError && r.reason.code === 'FENCED');
      await this.drop(failedShards);
      throw (fenced ?? failures[0]!).reason;
    }
    const outcome: PublishOutcome = { deliveries: [], refused: [] };
    for (const r of results) {
      const o = (r as PromiseFulfilledResult<PublishOutcome>).value;
      outcome.deliveries.push(...o.deliveries);
      outcome.refused.push(...o.refused);
    }
    return outcome;
  }

  /** Close every shard's producer (a claim in progress first finishes, then its producer goes too). */
  reset(): Promise<void> {
    return this.drop([...new Set([...this.sinks.keys(), ...this.chains.keys()])]);
  }
}
