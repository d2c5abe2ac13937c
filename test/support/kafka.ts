import type { Kafka, KafkaMessage } from 'kafkajs';

/** Create topics (idempotent) with the single-broker replication factor. */
export async function createTopics(kafka: Kafka, topics: string[], partitions = 1): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: topics.map((topic) => ({ topic, numPartitions: partitions, replicationFactor: 1 })) });
  } finally {
    await admin.disconnect();
  }
}

export interface ReadMessage {
  topic: string;
  partition: number;
  offset: string;
  message: KafkaMessage;
}

/**
 * Read every message of the topics from the beginning until `count` arrived (or the high watermarks are
 * reached when count is omitted), with a time limit. Used to verify delivery by reading the topic back.
 */
export async function readTopics(kafka: Kafka, topics: string[], options: { count?: number; timeoutMs?: number } = {}): Promise<ReadMessage[]> {
  const targets = new Map<string, bigint>();
  // Right after a broker restart, metadata may lag for a few seconds ("does not host this
  // topic-partition"): retry the high-watermark lookup for a while.
  for (let attempt = 1; ; attempt++) {
    const admin = kafka.admin();
    try {
      await admin.connect();
      for (const topic of topics) {
        for (const p of await admin.fetchTopicOffsets(topic)) targets.set(`${topic}/${p.partition}`, BigInt(p.high));
      }
      break;
    } catch (err) {
      if (attempt >= 30) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    } finally {
      await admin.disconnect();
    }
  }
  const out: ReadMessage[] = [];
  const total = options.count ?? [...targets.values()].reduce((a, b) => a + Number(b), 0);
  if (total === 0) return out;
  const consumer = kafka.consumer({ groupId: `reader-${Date.now()}-${Math.random().toString(16).slice(2)}` });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      // Without a count, read until every partition's position reaches its high watermark: offsets of a
      // transactionally written topic include commit markers, which are never delivered as messages
      // (a batch of markers only shows in the batch events).
      const position = new Map<string, bigint>();
      const finished = (): boolean => (options.count !== undefined ? out.length >= total : [...targets].every(([k, high]) => high === 0n || (position.get(k) ?? 0n) >= high));
      const timer = setTimeout(() => reject(new Error(`read ${out.length} of ${total} messages before the time limit`)), options.timeoutMs ?? 60_000);
      const check = (): void => {
        if (finished()) {
          clearTimeout(timer);
          resolve();
        }
      };
      consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
        const p = e.payload as { topic: string; partition: number; lastOffset: string };
        position.set(`${p.topic}/${p.partition}`, BigInt(p.lastOffset) + 1n);
        check();
      });
      consumer
        .run({
          eachBatch: async ({ batch }) => {
            for (const message of batch.messages) {
              out.push({ topic: batch.topic, partition: batch.partition, offset: message.offset, message });
            }
            if (options.count !== undefined) check();
          },
        })
        .catch(reject);
    });
  } finally {
    await consumer.disconnect();
  }
  return out;
}
