import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import type { Kafka, Producer } from 'kafkajs';
import type { KafkaSettings } from '../core/config';
import { OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { replicationConfigEntries, resolveReplication } from '../core/topics';
import { parseCheckpoint, type SignedCheckpoint } from './checkpoint';
import type { AggregateHead } from './merkle';
import { readTopicsToEnd } from './read-topic';

/**
 * Where checkpoints are kept, outside PostgreSQL: a compacted Kafka topic `<schema>.outbox.checkpoints`
 * and, optionally, an append-only JSON Lines file (one checkpoint per line).
 *
 * The record key is the covered outbox id (decimal): compaction keeps the latest record per key, so
 * every checkpoint survives compaction; taking a checkpoint twice with nothing new in between writes the
 * same key again, and only the latest of those is kept.
 */
export function checkpointTopic(schema: string): string {
  return `${schema}.outbox.checkpoints`;
}

/** Create the checkpoint topic (one partition, compacted, replicated as the other topics) if missing. */
export async function ensureCheckpointTopic(kafka: Kafka, options: { topic: string; settings: KafkaSettings; logger: Logger }): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    if ((await admin.listTopics()).includes(options.topic)) return;
    const replication = await resolveReplication(admin, options.settings);
    const created = await admin.createTopics({
      waitForLeaders: true,
      topics: [
        {
          topic: options.topic,
          numPartitions: 1,
          replicationFactor: replication.replicationFactor,
          configEntries: [...replicationConfigEntries(replication), { name: 'cleanup.policy', value: 'compact' }],
        },
      ],
    });
    if (created) options.logger.info({ topic: options.topic, ...replication }, 'created the checkpoint topic');
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export async function publishCheckpoint(producer: Producer, options: { topic: string; checkpoint: SignedCheckpoint }): Promise<void> {
  try {
    await producer.send({ topic: options.topic, acks: -1, messages: [{ key: options.checkpoint.coveredId, value: JSON.stringify(options.checkpoint) }] });
  } catch (err) {
    throw new OutboxError('KAFKA_UNAVAILABLE', `could not write the checkpoint to ${options.topic}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Append one checkpoint as a line. With `heads`, the line also carries them (field `heads`: [type, id,
 * version, hash hex] per aggregate, unsigned but checked against the signed root), so that a later verify
 * can name the first aggregate and version that differs; the line then grows with the number of aggregates.
 */
export function appendCheckpointFile(file: string, checkpoint: SignedCheckpoint, heads?: readonly AggregateHead[]): void {
  const line = heads ? { ...checkpoint, heads: heads.map((h) => [h.aggregateType, h.aggregateId, h.version.toString(), h.hash.toString('hex')]) } : checkpoint;
  try {
    appendFileSync(file, `${JSON.stringify(line)}\n`, { mode: 0o644 });
  } catch (err) {
    throw new OutboxError('CONFIG_INVALID', `cannot append the checkpoint to ${file}: ${(err as Error).message}`, { cause: err, details: { file } });
  }
}

/** A checkpoint as read, or why the record could not be read as one. */
export type StoredCheckpoint = { where: string; checkpoint: SignedCheckpoint; heads?: AggregateHead[] } | { where: string; unreadable: string };

/** The heads stored beside a checkpoint in its file line, or undefined when there are none (or they are malformed). */
function headsOf(line: string): AggregateHead[] | undefined {
  const heads = (JSON.parse(line) as { heads?: unknown }).heads;
  if (!Array.isArray(heads)) return undefined;
  const out: AggregateHead[] = [];
  for (const h of heads) {
    if (!Array.isArray(h) || h.length !== 4 || !h.every((x) => typeof x === 'string') || !/^\d+$/.test(h[2] as string) || !/^[0-9a-f]{64}$/.test(h[3] as string)) return undefined;
    out.push({ aggregateType: h[0] as string, aggregateId: h[1] as string, version: BigInt(h[2] as string), hash: Buffer.from(h[3] as string, 'hex') });
  }
  return out;
}

/** `source` is a file when one exists at that path, else a topic name. */
export function isCheckpointFile(source: string): boolean {
  return existsSync(source);
}

export function readCheckpointFile(file: string): StoredCheckpoint[] {
  const out: StoredCheckpoint[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      const where = `${file}:${i + 1}`;
      try {
        const checkpoint = parseCheckpoint(line, where);
        const heads = headsOf(line);
        out.push({ where, checkpoint, ...(heads ? { heads } : {}) });
      } catch (err) {
        out.push({ where, unreadable: (err as Error).message });
      }
    });
  return out;
}

export async function readCheckpointTopic(kafka: Kafka, options: { topic: string; logger: Logger }): Promise<StoredCheckpoint[]> {
  const out: StoredCheckpoint[] = [];
  const { missing } = await readTopicsToEnd(kafka, {
    topics: [options.topic],
    logger: options.logger,
    onMessage: (topic, partition, m) => {
      const where = `${topic}/${partition}@${m.offset}`;
      try {
        out.push({ where, checkpoint: parseCheckpoint(m.value?.toString('utf8') ?? '', where) });
      } catch (err) {
        out.push({ where, unreadable: (err as Error).message });
      }
    },
  });
  if (missing.length > 0) throw new OutboxError('NOT_FOUND', `checkpoint topic ${options.topic} does not exist (no file of that name either)`);
  return out;
}
