import type { IHeaders } from 'kafkajs';
import type pg from 'pg';
import type { Logger } from '../core/logger';
import type { DecodedEvent } from '../event/envelope';

/** The Kafka message an event came from (original bytes kept for the dead-letter topic). */
export interface SourceMessage {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: IHeaders;
  timestamp: string;
}

/** One decoded event handed to a projection. */
export interface ProjectedEvent {
  event: DecodedEvent;
  schemaId: number;
  source: SourceMessage;
}

/** What a handler returns: nothing (applied) or a rejection (the event goes to the dead-letter topic). */
export type HandlerResult = void | { rejected: string };

/** Where and how a batch is applied: one PostgreSQL transaction, one generation of the projection's tables. */
export interface ApplyContext {
  /** The client of the open transaction (do not COMMIT/ROLLBACK). */
  client: pg.PoolClient;
  projection: string;
  generation: number;
  /** Unquoted PostgreSQL schema holding this generation's tables. */
  pgSchema: string;
  /** Unquoted schema of the projector's own tables (the outbox schema). */
  outboxSchema: string;
  /** Quoted, qualified name of an owned table of this generation. */
  table(name: string): string;
  logger: Logger;
  /** True when applying into a shadow generation during a rebuild. */
  rebuilding: boolean;
  snapshotEvery: number;
}

export type EventHandler = (event: ProjectedEvent, ctx: ApplyContext) => Promise<HandlerResult>;

/** A rejection of one event of a batch, by its index in the batch. */
export interface BatchRejection {
  index: number;
  reason: string;
}

/**
 * A projection: a name, the topics it reads, a handler per event type and the tables it owns.
 * Handlers run in a PostgreSQL transaction together with the stored offsets.
 */
export interface Projection {
  /** Lower-case SQL identifier ([a-z][a-z0-9_]*). */
  name: string;
  topics: string[];
  /** Owned tables; each is exposed as a view of the same name in the outbox schema. */
  tables: string[];
  /** Create the owned tables in `pgSchema` (quoted); called once per generation. */
  createTables(client: pg.ClientBase, pgSchema: string): Promise<void>;
  /** Handler per event type; events of other types are skipped (offset still advances). */
  handlers: Partial<Record<string, EventHandler>>;
  /**
   * Optional fast path applying a whole batch (in order). Must behave like the handlers. Rejections are
   * returned; a thrown non-transient error makes the projector re-apply the batch event by event.
   */
  applyBatch?(events: ProjectedEvent[], ctx: ApplyContext): Promise<BatchRejection[]>;
  /** Columns to compare per table in a dry-run rebuild (default all); leave out wall-clock columns. */
  compareColumns?: Partial<Record<string, string[]>>;
}

/** An event as a reducer sees it (a decoded event, or a row of audit_log). */
export type { ReducibleEvent } from '../event/envelope';
import type { ReducibleEvent } from '../event/envelope';

/** Folds an aggregate's events into its state; snapshots are tagged with `version` and `schemaVersion`. */
export interface AggregateReducer<S = unknown> {
  aggregateType: string;
  /** Bump when the fold changes: snapshots of other versions are ignored. */
  version: number;
  /** Version of the state's shape (stored with each snapshot). */
  schemaVersion: number;
  initial(aggregateId: string): S;
  apply(state: S, event: ReducibleEvent): S;
}
