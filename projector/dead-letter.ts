import type { Admin, IHeaders, Producer } from 'kafkajs';
import { errorMessage, OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { isRetriable, retry, RETRY_POLICIES } from '../core/retry';
import { replicationConfigEntries, replicationMismatches, reportReplicationMismatches, resolveReplication, type ReplicationSettings, type TopicReplication } from '../core/topics';
import type { DeadLetterKind } from './decode-message';
import type { SourceMessage } from './types';

/** `<topic>.dlq` */
export function dlqTopicOf(topic: string): string {
  return `${topic}.dlq`;
}

const EXCEPTION_CLASS: Record<DeadLetterKind, string> = {
  bad_magic: 'kafka_outbox.projector.BadMagicByte',
  unknown_schema_id: 'kafka_outbox.projector.UnknownSchemaId',
  undecodable: 'kafka_outbox.projector.UndecodableMessage',
  handler_rejected: 'kafka_outbox.projector.HandlerRejected',
};

export interface DeadLetter {
  source: SourceMessage;
  kind: DeadLetterKind;
  reason: string;
  /** '' for decode failures (shared by every projection of the topic). */
  projection: string;
}

/** Kafka Connect style error headers, added to the original message's headers. */
export function deadLetterHeaders(d: DeadLetter): IHeaders {
  return {
    ...d.source.headers,
    '__connect.errors.topic': d.source.topic,
    '__connect.errors.partition': String(d.source.partition),
    '__connect.errors.offset': d.source.offset,
    '__connect.errors.connector.name': d.projection === '' ? 'kafka-outbox-projector' : `kafka-outbox-projector/${d.projection}`,
    '__connect.errors.stage': d.kind === 'handler_rejected' ? 'TASK_PUT' : 'VALUE_CONVERTER',
    '__connect.errors.exception.class.name': EXCEPTION_CLASS[d.kind],
    '__connect.errors.exception.message': d.reason.slice(0, 4000),
  };
}

/** Publish dead letters (original key and bytes). A failure is KAFKA_UNAVAILABLE: the batch is retried. */
export async function publishDeadLetters(producer: Producer, letters: DeadLetter[]): Promise<void> {
  if (letters.length === 0) return;
  const byTopic = new Map<string, DeadLetter[]>();
  for (const d of letters) byTopic.set(dlqTopicOf(d.source.topic), [...(byTopic.get(dlqTopicOf(d.source.topic)) ?? []), d]);
  try {
    await producer.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, ds]) => ({
        topic,
        messages: ds.map((d) => ({ key: d.source.key, value: d.source.value, headers: deadLetterHeaders(d), timestamp: d.source.timestamp })),
      })),
    });
  } catch (err) {
    throw new OutboxError('KAFKA_UNAVAILABLE', `publishing to the dead-letter topic failed: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Create the dead-letter topics of `topics` if missing (1 partition each). A topic just created may not
 * have its leader yet (the broker answers "does not host this topic-partition"): transient errors are
 * retried a few times with backoff (8 attempts, about 10 s: then the projector's start fails and its
 * caller retries the whole start).
 */
export async function ensureDeadLetterTopics(admin: Admin, topics: string[], options: { replication?: ReplicationSettings; logger?: Logger } = {}): Promise<void> {
  let replication: TopicReplication | undefined;
  const ensure = async (attempt: number): Promise<void> => {
    const existing = new Set(await admin.listTopics());
    const wanted = topics.map(dlqTopicOf);
    const missing = wanted.filter((t) => !existing.has(t));
    replication ??= await resolveReplication(admin, options.replication ?? {});
    if (attempt === 1 && options.logger)
      reportReplicationMismatches(
        options.logger,
        await replicationMismatches(
          admin,
          wanted.filter((t) => existing.has(t)),
          replication,
        ),
      );
    if (missing.length === 0) return;
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({ topic, numPartitions: 1, replicationFactor: replication!.replicationFactor, configEntries: replicationConfigEntries(replication!) })),
      });
    } catch (err) {
      // Created concurrently by another projector: fine.
      if (/already exists/i.test(errorMessage(err))) return;
      throw new CreateFailed(err);
    }
  };
  try {
    await retry(ensure, { policy: { ...RETRY_POLICIES.metadata, maxAttempts: 8 }, retryIf: (err) => err instanceof CreateFailed && isRetriable(err.cause) });
  } catch (err) {
    if (!(err instanceof CreateFailed)) throw err;
    throw new OutboxError('KAFKA_UNAVAILABLE', `creating dead-letter topics failed: ${errorMessage(err.cause)}`, { cause: err.cause });
  }
}

/** createTopics failed (told apart from the listing and the replication look-up, whose errors pass as they are). */
class CreateFailed extends Error {
  constructor(override readonly cause: unknown) {
    super(errorMessage(cause));
  }
}
