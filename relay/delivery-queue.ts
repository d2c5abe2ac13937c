import type pg from 'pg';
import type { Logger } from '../core/logger';
import { createPool } from '../core/pg';
import { analyzeQueue, claimPending, type Claim } from './claim-batch';
import { cleanDelivered } from './clean-delivered';
import { markDelivered, type Delivery } from './mark-delivered';
import { parkEvent } from './park-event';

export interface DeliveryQueueOptions {
  databaseUrl: string;
  /** The outbox schema. */
  schema: string;
  logger: Logger;
  /** Events per claim (OUTBOX_RELAY_BATCH_SIZE). */
  batchSize: number;
  /** Stored payload bytes per claim (OUTBOX_RELAY_BATCH_BYTES). */
  batchBytes: number;
  /** The shards to claim from, asked before each claim (a sharded relay's own); unset: the whole queue. */
  shards?: () => readonly number[];
}

/**
 * The outbox's delivery queue as the relay sees it: claim the oldest pending events, mark what the
 * destination acknowledged, park what it can never take, refresh the planner statistics, clean old
 * bookkeeping. Owns its PostgreSQL pool (opened on first use, ended by `close`).
 */
export class DeliveryQueue {
  private pool: pg.Pool | null = null;
  /** When the planner statistics were last refreshed (ms since the epoch). */
  private lastAnalyze = 0;

  constructor(private readonly options: DeliveryQueueOptions) {}

  /** The next pending events in order, except `inFlight` (ids being sent right now); `full` when a limit cut the claim. */
  claim(inFlight: string[] = []): Promise<Claim> {
    const shards = this.options.shards?.();
    return claimPending(this.db(), {
      schema: this.options.schema,
      limit: this.options.batchSize,
      maxBytes: this.options.batchBytes,
      inFlight,
      ...(shards !== undefined ? { shards } : {}),
    });
  }

  mark(deliveries: Delivery[]): Promise<void> {
    return markDelivered(this.db(), this.options.schema, deliveries);
  }

  park(id: string, reason: string): Promise<void> {
    return parkEvent(this.db(), this.options.schema, id, reason);
  }

  analyze(): Promise<void> {
    this.lastAnalyze = Date.now();
    return analyzeQueue(this.db(), this.options.schema);
  }

  /**
   * Whether a claim calls for fresh statistics: a full batch that was slow to claim (over 250 ms), with
   * no refresh in the last minute. The queue probably grew faster than autovacuum analyzes it.
   */
  analysisDue(claim: { ms: number; full: boolean }): boolean {
    return claim.ms > 250 && claim.full && Date.now() - this.lastAnalyze > 60_000;
  }

  clean(retentionMs: number): Promise<number> {
    return cleanDelivered(this.db(), this.options.schema, retentionMs);
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.end().catch(() => undefined);
  }

  private db(): pg.Pool {
    this.pool ??= createPool(this.options.databaseUrl, this.options.logger, { max: 2, applicationName: 'kafka-outbox-relay' });
    return this.pool;
  }
}
