import type pg from 'pg';
import type { OutboxConfig } from '../core/config';
import type { Logger } from '../core/logger';
import { projectionStatus as read } from '../projector/report-lag';

/** One projection's progress as `outbox status` shows it. */
export interface ProjectionStatus {
  name: string;
  /** Messages not yet applied (high watermark minus last applied offset, summed over partitions). */
  lag?: number;
  /** Last applied offset per partition, `topic/partition@offset` joined by commas. */
  lastAppliedOffset?: string;
  updatedAt?: string;
  note?: string;
}

/** Per-projection lag and last applied offset, from the projector's tables and the topics' watermarks. */
export async function projectionStatus(args: { config: OutboxConfig; pool: pg.Pool; logger: Logger }): Promise<ProjectionStatus[]> {
  return read(args);
}
