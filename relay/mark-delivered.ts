import type pg from 'pg';
import { ident } from '../core/pg';

export interface Delivery {
  id: string;
  topic: string;
  partition: number;
  offset: string;
}

/** Record broker-acknowledged deliveries, in one statement. Only the delivery bookkeeping changes, never the history. */
export async function markDelivered(db: pg.ClientBase | pg.Pool, schema: string, deliveries: Delivery[]): Promise<void> {
  if (deliveries.length === 0) return;
  await db.query(
    `UPDATE ${ident(schema)}.outbox_delivery d
        SET delivered_at = clock_timestamp(), topic = x.topic, kafka_partition = x.part, kafka_offset = x.off, attempts = d.attempts + 1
       FROM unnest($1::bigint[], $2::text[], $3::int[], $4::bigint[]) AS x(id, topic, part, off)
      WHERE d.id = x.id AND d.delivered_at IS NULL`,
    [deliveries.map((d) => d.id), deliveries.map((d) => d.topic), deliveries.map((d) => d.partition), deliveries.map((d) => d.offset)],
  );
}
