import type { Consumer, Kafka, Producer } from 'kafkajs';
import type pg from 'pg';
import { errorMessage, isOutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { ident } from '../core/pg';
import { consumerCrashLevel } from '../core/kafka';
import { applyAndCheckpoint, type ApplyResult, type ApplyTarget } from './apply-and-checkpoint';
import { publishDeadLetters } from './dead-letter';
import { decodeMessages, type EventDecoderLike } from './decode-message';
import type { ProjectorMetrics } from './metrics';
import { retry, RETRY_POLICIES } from '../core/retry';

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
  /**
   * The consumer's position in a partition after a fetched batch was handled: the next offset it
   * fetches (every offset below it was applied, or is not a record: a transaction marker, an aborted
   * record), and the partition's high watermark from that fetch. Lag and "caught up" are based on this,
   * never on the last applied offset + 1: on a transactionally written topic, markers occupy offsets.
   */
  onPosition?(topic: string, partition: number, position: { next: bigint; highWatermark: string }): void;
  /** The partitions this consumer holds after each group join (a rebalance), by topic. */
  onAssigned?(assignment: Record<string, number[]>): void;
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
 * assignment the partition is paused until the consumer has sought to the database checkpoint + 1, and a
 * batch that starts past the checkpoint + 1 anyway is refused and read again from there.
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
    // read_committed: only committed transactions' records (the relay publishes in transactions).
    readUncommitted: false,
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
    log[consumerCrashLevel(e.payload)]({ projection, err: e.payload.error, restart: e.payload.restart }, 'projector consumer crashed');
    if (!e.payload.restart) rejectDone(e.payload.error);
  });
  // A partition is paused from its assignment until the seek to its database checkpoint is set: kafkajs
  // would otherwise fetch from Kafka's committed offset (a hint, possibly ahead of the database, as after
  // a restore) before the seek takes effect.
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const assignment = e.payload.memberAssignment as Record<string, number[]>;
    o.onAssigned?.(assignment);
    const assigned = Object.entries(assignment).filter(([, partitions]) => partitions.length > 0);
    if (assigned.length === 0) return;
    consumer.pause(assigned.map(([topic, partitions]) => ({ topic, partitions })));
    void (async () => {
      for (const [topic, partitions] of assigned) {
        for (const partition of partitions) {
          await retry(
            async () => {
              const offset = await o.startOffset(topic, partition);
              if (offset !== null) consumer.seek({ topic, partition, offset });
              consumer.resume([{ topic, partitions: [partition] }]);
            },
            {
              policy: RETRY_POLICIES.consumer,
              retryIf: () => true,
              signal: abort.signal,
              onRetry: ({ err }) => log.warn({ projection, topic, partition, err: errorMessage(err) }, 'reading the checkpoint failed; retrying'),
            },
          ).catch(() => undefined); // stopped
        }
      }
    })();
  });
  // A fetched batch of nothing but transaction markers or aborted records never reaches eachBatch; kafkajs
  // moves its position past them and reports it here. The checkpoint follows (it stays "every offset up
  // to here was handled"), so that lag and "caught up" reach 0 on a transactionally written topic.
  consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
    const p = e.payload;
    if (p.batchSize !== 0 || p.firstOffset === null || p.firstOffset === undefined) return;
    const through = BigInt(p.lastOffset);
    void advanceCheckpoint({ pool: o.pool, target: o.target, topic: p.topic, partition: p.partition, from: BigInt(p.firstOffset) - 1n, through })
      .then((moved) => {
        if (moved) o.onPosition?.(p.topic, p.partition, { next: through + 1n, highWatermark: p.highWatermark });
      })
      .catch((err: unknown) => log.debug({ projection, topic: p.topic, partition: p.partition, err: errorMessage(err) }, 'moving the checkpoint past transaction markers failed'));
  });
  // Per partition, the last batch refused because it started past the checkpoint + 1 (and where it
  // started): when reading again from the checkpoint + 1 brings the same first offset, the offsets in
  // between are not in the log (transaction markers, compaction, retention) and the batch is applied.
  const refused = new Map<string, { expected: bigint; first: bigint }>();

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
      const key = `${topic}\u0000${partition}`;
      // Where this batch was read from (kafkajs fetches from one offset and drops messages below it).
      const fetchedOffset = (batch as { fetchedOffset?: string }).fetchedOffset;
      let readFrom: bigint | undefined = fetchedOffset !== undefined ? BigInt(fetchedOffset) : undefined;
      const previous = refused.get(key);
      if (previous && BigInt(messages[0]!.offset) === previous.first && (readFrom === undefined || readFrom > previous.expected)) {
        log.warn(
          { projection, topic, partition, from: previous.expected.toString(), to: (previous.first - 1n).toString() },
          'offsets are not in the log (transaction markers, compaction or retention); continuing after them',
        );
        readFrom = previous.expected;
      }
      refused.delete(key);
      // The batch may end in offsets that are not records (a transaction's commit marker): the last
      // chunk's checkpoint write moves past them, as kafkajs's position does when the last record is resolved.
      const batchEnd = BigInt(batch.lastOffset());
      let next: bigint | undefined;
      for (let i = 0; i < messages.length; i += o.batchSize) {
        const chunk = messages.slice(i, i + o.batchSize);
        const chunkEnd = BigInt(chunk[chunk.length - 1]!.offset);
        const through = i + o.batchSize >= messages.length && batchEnd > chunkEnd ? batchEnd : undefined;
        let result: ApplyResult;
        let t0 = 0n;
        try {
          result = await retry(
            async (attempt) => {
              if (attempt > 1) await heartbeat().catch(() => undefined);
              t0 = process.hrtime.bigint();
              const decoded = await decodeMessages(o.decoder, topic, partition, chunk);
              return applyAndCheckpoint({
                pool: o.pool,
                target: o.target,
                topic,
                partition,
                messages: decoded,
                publish: (letters) => publishDeadLetters(o.producer, letters),
                ...(readFrom !== undefined ? { readFrom } : {}),
                ...(through !== undefined ? { through } : {}),
              });
            },
            {
              policy: RETRY_POLICIES.consumer,
              retryIf: () => true,
              signal: abort.signal,
              cancelled: () => !isRunning() || isStale(),
              onRetry: ({ err, attempt, retriable }) =>
                log[retriable ? 'warn' : 'error'](
                  { projection, topic, partition, attempt: attempt - 1, err },
                  `applying a batch failed (${retriable ? 'transient' : 'unexpected'}); retrying: ${errorMessage(err)}`,
                ),
            },
          );
        } catch (err) {
          if (isOutboxError(err, 'SHUTDOWN')) return; // stopping, or the batch went stale (a rebalance)
          throw err;
        }
        if (result.gap) {
          // Fetched from past the checkpoint: read again from the checkpoint + 1.
          refused.set(key, result.gap);
          consumer.seek({ topic, partition, offset: result.gap.expected.toString() });
          return;
        }
        o.metrics?.batchSeconds.observe({ projection }, Number(process.hrtime.bigint() - t0) / 1e9);
        o.metrics?.appliedTotal.inc({ projection }, result.applied);
        if (result.deadLettered.length > 0) o.metrics?.dlqTotal.inc({ projection }, result.deadLettered.length);
        o.onApplied?.(topic, partition, result, batch.highWatermark);
        const last = chunk[chunk.length - 1]!.offset;
        next = (through ?? chunkEnd) + 1n;
        // The next chunk continues the same read.
        readFrom = BigInt(last) + 1n;
        resolveOffset(last);
        await heartbeat().catch(() => undefined);
      }
      if (next !== undefined) {
        o.onPosition?.(topic, partition, { next, highWatermark: batch.highWatermark });
        // A hint only: the database checkpoint is the truth.
        await consumer.commitOffsets([{ topic, partition, offset: next.toString() }]).catch((err: unknown) => {
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

/**
 * Move a partition's checkpoint from anywhere in [from, through) to `through`, when the offsets in
 * between are known not to be records (transaction markers, aborted records); a checkpoint elsewhere (a
 * rebalance, a seek, another consumer) is left alone. Returns whether the checkpoint is now at or past
 * `through`.
 */
async function advanceCheckpoint(args: { pool: pg.Pool; target: ApplyTarget; topic: string; partition: number; from: bigint; through: bigint }): Promise<boolean> {
  const { pool, target, topic, partition, from, through } = args;
  const o = ident(target.outboxSchema);
  const generation = target.generation === 'live' ? `(SELECT live_generation FROM ${o}.projector_projections WHERE projection = $1)` : '$6::int';
  const key = `projection = $1 AND topic = $2 AND partition = $3 AND generation = ${generation}`;
  const { rows } = await pool.query<{ moved: boolean }>(
    `WITH moved AS (UPDATE ${o}.projector_offsets SET last_offset = $5, updated_at = now() WHERE ${key} AND last_offset >= $4 AND last_offset < $5 RETURNING 1)
     SELECT EXISTS (SELECT 1 FROM moved) OR EXISTS (SELECT 1 FROM ${o}.projector_offsets WHERE ${key} AND last_offset >= $5) AS moved`,
    [target.projection.name, topic, partition, from.toString(), through.toString(), ...(target.generation === 'live' ? [] : [target.generation])],
  );
  return rows[0]?.moved === true;
}
