import type { Producer } from 'kafkajs';
import type pg from 'pg';
import type { EventEncoderPort } from '../relay/encode-batch';
import { eventHeaders } from '../relay/publish-batch';
import { DEFAULT_SCHEMA } from '../core/config';
import { claimBatch } from '../relay/claim-batch';

/**
 * The baseline people write first: one event at a time — read the oldest pending row, encode it, send
 * it, wait for the acknowledgement, mark it delivered. Same queue and encoding as the real relay, so the
 * ratio measures batching and pipelining alone.
 */
export function naiveRelay(pool: pg.Pool, producer: Producer, encoder: EventEncoderPort, topic: string): { stop(): Promise<void>; published: () => number } {
  let running = true;
  let published = 0;
  const loop = (async () => {
    while (running) {
      const [event] = await claimBatch(pool, { schema: DEFAULT_SCHEMA, limit: 1 });
      if (!event) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const encoded = await encoder.encode(event);
      if (!encoded.ok) throw new Error(encoded.reason);
      const [ack] = await producer.send({ topic, acks: -1, messages: [{ key: event.aggregateId, value: encoded.value, headers: eventHeaders(event) }] });
      await pool.query('UPDATE outbox_delivery SET delivered_at = clock_timestamp(), topic = $2, kafka_partition = $3, kafka_offset = $4 WHERE id = $1', [
        event.id,
        topic,
        ack?.partition ?? 0,
        ack?.baseOffset ?? '0',
      ]);
      published += 1;
    }
  })();
  return {
    published: () => published,
    async stop() {
      running = false;
      await loop;
    },
  };
}
