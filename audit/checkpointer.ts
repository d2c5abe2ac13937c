import { Partitioners, type Producer } from 'kafkajs';
import type { KafkaSettings } from '../core/config';
import { errorMessage, isOutboxError } from '../core/errors';
import { createKafka } from '../core/kafka';
import type { Logger } from '../core/logger';
import { createPool } from '../core/pg';
import { takeCheckpoint, type SignedCheckpoint } from './checkpoint';
import { appendCheckpointFile, checkpointTopic, ensureCheckpointTopic, publishCheckpoint } from './checkpoint-store';
import type { SigningKey } from './keys';

/** A checkpointer running beside another component (the relay): stop() ends it; done settles when it has. */
export interface Checkpointer {
  stop(): Promise<void>;
  done: Promise<void>;
}

export interface CheckpointerOptions {
  databaseUrl: string;
  schema: string;
  kafka: KafkaSettings;
  key: SigningKey;
  /** Interval between checkpoints; the first one is taken at once. */
  everyMs: number;
  /** Also append each checkpoint to this JSON Lines file. */
  file?: string;
  logger: Logger;
  /** Logger for the Kafka client (default: `logger`). */
  libLogger?: Logger;
  /** Called after each checkpoint was written. */
  onCheckpoint?: (c: SignedCheckpoint) => void;
}

/**
 * Take a signed checkpoint every `everyMs` until stopped, with its own small pool and producer, so that
 * it never competes with the component beside it. A failure (PostgreSQL or Kafka away, the file not
 * writable) is logged and the checkpoint is tried again at the next interval; it never stops the process
 * it runs in. The topic and the producer are set up on the first attempt and again after a failure.
 */
export function startCheckpointer(options: CheckpointerOptions): Checkpointer {
  const log = options.logger;
  const topic = checkpointTopic(options.schema);
  const pool = createPool(options.databaseUrl, log, { max: 2, applicationName: 'outbox-audit-checkpoint' });
  const kafka = createKafka(options.kafka, options.libLogger ?? log, 'audit-checkpoint', { retries: 2 });
  let producer: Producer | undefined;
  let stopped = false;
  let wake: (() => void) | undefined;
  let timer: NodeJS.Timeout | undefined;

  async function once(): Promise<void> {
    if (!producer) {
      await ensureCheckpointTopic(kafka, { topic, settings: options.kafka, logger: log });
      const p = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
      await p.connect();
      producer = p;
    }
    const c = await takeCheckpoint(pool, { schema: options.schema, key: options.key, logger: log });
    await publishCheckpoint(producer, { topic, checkpoint: c });
    if (options.file !== undefined) appendCheckpointFile(options.file, c);
    log.info({ coveredId: c.coveredId, eventCount: c.eventCount, aggregateCount: c.aggregateCount, root: c.root, keyId: c.keyId, topic, file: options.file }, 'checkpoint written');
    options.onCheckpoint?.(c);
  }

  const done = (async () => {
    try {
      while (!stopped) {
        try {
          await once();
        } catch (err) {
          const retriable = isOutboxError(err) && err.retriable;
          log[retriable ? 'warn' : 'error']({ err }, `checkpoint failed; trying again in ${options.everyMs} ms: ${errorMessage(err)}`);
          const p = producer;
          producer = undefined;
          await p?.disconnect().catch(() => undefined);
        }
        if (stopped) break;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, options.everyMs);
        });
      }
    } finally {
      await producer?.disconnect().catch(() => undefined);
      await pool.end().catch(() => undefined);
    }
  })();

  return {
    done,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      wake?.();
      await done;
    },
  };
}
