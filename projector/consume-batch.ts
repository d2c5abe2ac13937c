import type { Consumer, Kafka, Producer } from 'kafkajs';
import type pg from 'pg';
import { errorMessage } from '../core/errors';
import type { Logger } from '../core/logger';
import { applyAndCheckpoint, type ApplyResult, type ApplyTarget } from './apply-and-checkpoint';
import { publishDeadLetters } from './dead-letter';
import { decodeMessages, type EventDecoderLike } from './decode-message';
import type { ProjectorMetrics } from './metrics';
import { backoffMs, isTransient, sleep } from './retry-transient';

export interface ConsumeOptions {
  kafka: Kafka;
  pool: pg.Pool;
  decoder: EventDecoderLike;
  /** Producer for the dead-letter topics. */
  producer: Producer;
  target: ApplyTarget;
  groupId: string;
  topics: string[];
  /** Messages per transaction. */
  batchSize: number;
  sessionTimeoutMs?: number;
  partitionsConsumedConcurrently?: number;
  /** Where a partition starts when assigned: the stored checkpoint + 1 (null: Kafka's committed offset, else the earliest). */
  startOffset(topic: string, partition: number): Promise<string | null>;
  onApplied?(topic: string, partition: number, result: ApplyResult, highWatermark: string): void;
  logger: Logger;
  metrics?: ProjectorMetrics;
}

export interface RunningConsumer {
  consumer: Consumer;
  /** Rejects when the consumer crashed for good. */
  done: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Consume the topics with kafkajs eachBatch and manual offset resolution: every chunk of `batchSize`
 * messages is decoded and applied in one transaction with its checkpoint (applyAndCheckpoint). Any
 * failure is retried with backoff (transient ones are expected: PostgreSQL or the registry down), never
 * skipped. Offsets are committed to Kafka only after the database commit and only as a hint: on every
 * assignment the consumer seeks to the database checkpoint + 1.
 */
export async function consumeBatches(o: ConsumeOptions): Promise<RunningConsumer> {
  const log = o.logger;
  const abort = new AbortController();
  const projection = o.target.projection.name;
  const consumer = o.kafka.consumer({
    groupId: o.groupId,
    sessionTimeout: o.sessionTimeoutMs ?? 30_000,
    heartbeatInterval: Math.max(500, Math.floor((o.sessionTimeoutMs ?? 30_000) / 6)),
    maxWaitTimeInMs: 250,
    retry: { retries: 10, initialRetryTime: 200, maxRetryTime: 5000 },
  });
  let resolveDone!: () => void;
  let rejectDone!: (err: unknown) => void;
  const done = new Promise<void>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  done.catch(() => undefined);

  consumer.on(consumer.events.CRASH, (e) => {
    log.error({ projection, err: e.payload.error, restart: e.payload.restart }, 'projector consumer crashed');
    if (!e.payload.restart) rejectDone(e.payload.error);
  });
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const assignment = e.payload.memberAssignment as Record<string, number[]>;
    void (async () => {
      for (const [topic, partitions] of Object.entries(assignment)) {
        for (const partition of partitions) {
          for (let attempt = 0; !abort.signal.aborted; attempt++) {
            try {
              const offset = await o.startOffset(topic, partition);
              if (offset !== null) consumer.seek({ topic, partition, offset });
              break;
            } catch (err) {
              log.warn({ projection, topic, partition, err: errorMessage(err) }, 'reading the checkpoint failed; retrying');
              await sleep(backoffMs(attempt), abort.signal);
            }
          }
        }
      }
    })();
  });

  await consumer.connect();
  await consumer.subscribe({ topics: o.topics, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: o.partitionsConsumedConcurrently ?? 1,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      const { topic, partition } = batch;
      const messages = batch.messages;
      if (messages.length === 0) return;
      let last: string | undefined;
      for (let i = 0; i < messages.length; i += o.batchSize) {
        const chunk = messages.slice(i, i + o.batchSize);
        for (let attempt = 0; ; attempt++) {
          if (!isRunning() || isStale() || abort.signal.aborted) return;
          const t0 = process.hrtime.bigint();
          try {
            const decoded = await decodeMessages(o.decoder, topic, partition, chunk);
            const result = await applyAndCheckpoint(o.pool, o.target, topic, partition, decoded, (letters) => publishDeadLetters(o.producer, letters));
            o.metrics?.batchSeconds.observe({ projection }, Number(process.hrtime.bigint() - t0) / 1e9);
            o.metrics?.appliedTotal.inc({ projection }, result.applied);
            if (result.deadLettered.length > 0) o.metrics?.dlqTotal.inc({ projection }, result.deadLettered.length);
            o.onApplied?.(topic, partition, result, batch.highWatermark);
            break;
          } catch (err) {
            const level = isTransient(err) ? 'warn' : 'error';
            log[level]({ projection, topic, partition, attempt, err }, `applying a batch failed (${isTransient(err) ? 'transient' : 'unexpected'}); retrying: ${errorMessage(err)}`);
            await sleep(backoffMs(attempt), abort.signal);
            await heartbeat().catch(() => undefined);
          }
        }
        last = chunk[chunk.length - 1]!.offset;
        resolveOffset(last);
        await heartbeat().catch(() => undefined);
      }
      if (last !== undefined) {
        // A hint only: the database checkpoint is the truth.
        await consumer.commitOffsets([{ topic, partition, offset: (BigInt(last) + 1n).toString() }]).catch((err: unknown) => {
          log.debug({ projection, topic, partition, err: errorMessage(err) }, 'committing the offset hint to Kafka failed');
        });
      }
    },
  });

  let stopped = false;
  return {
    consumer,
    done,
    async stop() {
      if (stopped) return;
      stopped = true;
      abort.abort();
      await consumer.disconnect().catch((err: unknown) => log.warn({ projection, err: errorMessage(err) }, 'consumer disconnect failed'));
      resolveDone();
    },
  };
}
