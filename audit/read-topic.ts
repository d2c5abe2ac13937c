import { randomBytes } from 'node:crypto';
import type { Kafka, KafkaMessage } from 'kafkajs';
import { isOutboxError, OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { redact } from '../core/redact';

/**
 * Read every message of `topics` from the beginning up to the end offsets they had when reading
 * started, then stop. Uses a throw-away consumer group that commits nothing and is deleted afterwards.
 * Topics that do not exist are skipped (returned in `missing`).
 */
export async function readTopicsToEnd(
  kafka: Kafka,
  options: { topics: string[]; logger: Logger; onMessage: (topic: string, partition: number, message: KafkaMessage) => void | Promise<void>; timeoutMs?: number },
): Promise<{ read: number; missing: string[] }> {
  try {
    return await readToEnd(kafka, options);
  } catch (err) {
    if (isOutboxError(err)) throw err;
    throw new OutboxError('KAFKA_UNAVAILABLE', `reading ${options.topics.join(', ')} from Kafka failed: ${redact((err as Error).message ?? String(err))}`, { cause: err });
  }
}

async function readToEnd(
  kafka: Kafka,
  options: { topics: string[]; logger: Logger; onMessage: (topic: string, partition: number, message: KafkaMessage) => void | Promise<void>; timeoutMs?: number },
): Promise<{ read: number; missing: string[] }> {
  const admin = kafka.admin();
  await admin.connect();
  const remaining = new Map<string, bigint>(); // `${topic}/${partition}` -> last offset to read
  const missing: string[] = [];
  const groupId = `outbox-audit-read-${randomBytes(6).toString('hex')}`;
  let read = 0;
  try {
    const existing = new Set(await admin.listTopics());
    const present = options.topics.filter((t) => existing.has(t));
    missing.push(...options.topics.filter((t) => !existing.has(t)));
    for (const topic of present) {
      for (const p of await admin.fetchTopicOffsets(topic)) {
        const high = BigInt(p.high);
        const low = BigInt(p.low);
        if (high > low) remaining.set(`${topic}/${p.partition}`, high - 1n);
      }
    }
    if (remaining.size === 0) return { read, missing };
    const wanted = new Set([...remaining.keys()].map((k) => k.slice(0, k.lastIndexOf('/'))));
    const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false, maxWaitTimeInMs: 200 });
    await consumer.connect();
    try {
      let finish: () => void = () => undefined;
      let fail: (err: unknown) => void = () => undefined;
      const done = new Promise<void>((resolve, reject) => {
        finish = resolve;
        fail = reject;
      });
      // The end of a partition is seen after each batch, including batches of only transaction markers
      // (which never reach eachBatch): lastOffset counts records the client filtered out.
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        const k = `${e.payload.topic}/${e.payload.partition}`;
        const last = remaining.get(k);
        if (last !== undefined && BigInt(e.payload.lastOffset) >= last) remaining.delete(k);
        if (remaining.size === 0) finish();
      });
      await consumer.subscribe({ topics: [...wanted], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: true,
        eachBatch: async ({ batch }) => {
          const k = `${batch.topic}/${batch.partition}`;
          const last = remaining.get(k);
          if (last === undefined) return;
          try {
            for (const m of batch.messages) {
              if (BigInt(m.offset) > last) break;
              read++;
              await options.onMessage(batch.topic, batch.partition, m);
            }
          } catch (err) {
            fail(err);
            return;
          }
        },
      });
      const timeoutMs = options.timeoutMs ?? 120_000;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`reading ${[...wanted].join(', ')} did not reach the end within ${timeoutMs} ms`)), timeoutMs);
      });
      try {
        await Promise.race([done, timeout]);
      } finally {
        clearTimeout(timer);
      }
    } finally {
      await consumer.disconnect().catch(() => undefined);
    }
    await admin.deleteGroups([groupId]).catch((err) => options.logger.debug({ err, groupId }, 'could not delete the audit read group'));
    return { read, missing };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
