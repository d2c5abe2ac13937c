import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import type { OutboxConfig } from '../core/config';
import { errorMessage } from '../core/errors';
import { createKafka } from '../core/kafka';
import type { Logger } from '../core/logger';
import { ident } from '../core/pg';
import type { PartitionLag } from './start-projector';

interface OffsetRow {
  projection: string;
  topic: string;
  partition: number;
  last_offset: string;
  updated_at: Date;
}

/**
 * Checkpoints of every projection's live generation, with the topics' ends from Kafka: lag per projection
 * and partition. A checkpoint is the last offset handled, past the transaction markers the consumer read
 * (consume-batch.ts), so checkpoint + 1 is the consumer's position; the admin client's offsets are
 * read_committed (the last stable offset: records of open transactions are not counted yet).
 */
export async function readProjectionLag(args: { config: OutboxConfig; pool: pg.Pool; logger: Logger; kafka?: Kafka }): Promise<PartitionLag[]> {
  const o = ident(args.config.projector.schema);
  const { rows } = await args.pool.query<OffsetRow>(
    `SELECT f.projection, f.topic, f.partition, f.last_offset, f.updated_at FROM ${o}.projector_offsets f
       JOIN ${o}.projector_projections p ON p.projection = f.projection AND p.live_generation = f.generation
      ORDER BY f.projection, f.topic, f.partition`,
  );
  const kafka = args.kafka ?? createKafka(args.config.kafka, args.logger, 'projector-status', { retries: 1 });
  const admin = kafka.admin();
  const high = new Map<string, string>();
  await admin.connect();
  try {
    for (const topic of [...new Set(rows.map((r) => r.topic))]) {
      for (const p of await admin.fetchTopicOffsets(topic)) high.set(`${topic}/${p.partition}`, p.high);
    }
  } finally {
    await admin.disconnect();
  }
  return rows.map((r) => {
    const hw = high.get(`${r.topic}/${r.partition}`) ?? '0';
    return {
      projection: r.projection,
      topic: r.topic,
      partition: r.partition,
      lastOffset: r.last_offset,
      highWatermark: hw,
      // Position-based: 0 once the consumer has read to the end, markers included.
      lag: Math.max(0, Number(BigInt(hw) - (BigInt(r.last_offset) + 1n))),
    };
  });
}

/** What `outbox status` shows per projection (cli/projections.ts). */
export async function projectionStatus(args: {
  config: OutboxConfig;
  pool: pg.Pool;
  logger: Logger;
}): Promise<Array<{ name: string; lag?: number; lastAppliedOffset?: string; updatedAt?: string; note?: string }>> {
  const o = ident(args.config.projector.schema);
  const { rows: projections } = await args.pool.query<{ projection: string; live_generation: number; updated_at: Date | null }>(
    `SELECT p.projection, p.live_generation, max(f.updated_at) AS updated_at FROM ${o}.projector_projections p
       LEFT JOIN ${o}.projector_offsets f ON f.projection = p.projection AND f.generation = p.live_generation
      GROUP BY p.projection, p.live_generation ORDER BY p.projection`,
  );
  let lags: PartitionLag[] | undefined;
  let note: string | undefined;
  try {
    lags = await readProjectionLag(args);
  } catch (err) {
    note = `lag unknown: ${errorMessage(err)}`;
  }
  return projections.map((p) => {
    const mine = lags?.filter((l) => l.projection === p.projection);
    return {
      name: p.projection,
      ...(mine ? { lag: mine.reduce((a, l) => a + l.lag, 0), lastAppliedOffset: mine.map((l) => `${l.topic}/${l.partition}@${l.lastOffset}`).join(',') } : {}),
      ...(p.updated_at ? { updatedAt: p.updated_at.toISOString() } : {}),
      note: `generation ${p.live_generation}${note ? `; ${note}` : ''}`,
    };
  });
}
