import type pg from 'pg';
import type { OutboxConfig } from '../core/config';
import type { Logger } from '../core/logger';
import { hasModule, optionalExport } from './optional';

/** One projection's progress as `outbox status` shows it. */
export interface ProjectionStatus {
  name: string;
  /** Messages not yet applied (high watermark minus committed offset, summed over partitions). */
  lag?: number;
  /** Last applied offset per partition, `topic/partition@offset` joined by commas, or a plain offset. */
  lastAppliedOffset?: string;
  updatedAt?: string;
  note?: string;
}


/**
 * Per-projection lag and last applied offset. The projector (projector/index.ts) owns its tables; when
 * it exports `projectionStatus({ config, pool, logger })` that is used. Until it lands, the list is empty
 * with a note.
 */
export async function projectionStatus(args: { config: OutboxConfig; pool: pg.Pool; logger: Logger }): Promise<ProjectionStatus[]> {
  if (!hasModule('projector/index')) return [{ name: '(projector)', note: 'projector not available yet in this build' }];
  const fn = optionalExport<(a: typeof args) => Promise<ProjectionStatus[]>>('projector/index', 'projectionStatus', 'projection status');
  return fn(args);
}
