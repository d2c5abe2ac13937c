import { context, trace, type Span } from '@opentelemetry/api';
import type pg from 'pg';
import { errorMessage } from '../core/errors';
import { endSpans, startMessagingSpan } from '../core/tracing';
import type { Logger } from '../core/logger';
import { ident } from '../core/pg';
import type { DeadLetter } from './dead-letter';
import type { DecodedMessage } from './decode-message';
import { generationSchema, liveLockKey } from './ensure-generation';
import { isRetriable } from '../core/retry';
import type { ApplyContext, BatchRejection, ProjectedEvent, Projection } from './types';

export interface ApplyTarget {
  projection: Projection;
  outboxSchema: string;
  /** 'live': the live generation (read under the projection's shared lock); a number: that (shadow) generation. */
  generation: 'live' | number;
  snapshotEvery: number;
  logger: Logger;
  /**
   * How many offsets below a partition's checkpoint the applied event_ids are remembered, to skip an
   * event re-published at a new offset (the relay re-sends only what it had just published). Older
   * ones are deleted, so the table stays bounded. Default DUPLICATE_WINDOW.
   */
  duplicateWindow?: number;
}

/** Default of ApplyTarget.duplicateWindow: far more than a relay re-publishes at once. */
export const DUPLICATE_WINDOW = 100_000;

/** Advisory lock a shadow generation's applies take (shared); a dry-run comparison takes it exclusively to freeze the shadow. */
export function shadowLockKey(outboxSchema: string, projection: string, generation: number): string {
  return `${liveLockKey(outboxSchema, projection)}:g${generation}`;
}

export interface ApplyResult {
  generation: number;
  /** Events handed to the projection. */
  applied: number;
  /** Messages at or below the stored offset (redelivered). */
  skippedOffsets: number;
  /** Events whose event_id the generation had already applied. */
  skippedDuplicates: number;
  /** Dead letters recorded and published by this call. */
  deadLettered: DeadLetter[];
  /** Largest offset of the batch, now the stored checkpoint unless `through` moved it further (null when the batch was empty or refused). */
  lastOffset: bigint | null;
  /** Set when the batch was refused: it starts at `first` but the checkpoint is at `expected` - 1. */
  gap?: { expected: bigint; first: bigint };
}

export interface ApplyBatch {
  pool: pg.Pool;
  target: ApplyTarget;
  topic: string;
  partition: number;
  /** The partition's messages, in offset order. */
  messages: DecodedMessage[];
  /** Publishes dead letters (before the commit). */
  publish: (letters: DeadLetter[]) => Promise<void>;
  /**
   * The offset from which the caller read the partition without a hole (the fetch offset of the
   * Kafka batch, or the offset after the previous chunk of it). Offsets missing between it and the
   * first message are not in the log (transaction markers, compaction). Unknown: undefined.
   */
  readFrom?: bigint;
  /**
   * The last offset of the fetched Kafka batch, when these messages end it. The offsets after the last
   * message up to it are not records (a transaction's commit marker, aborted records): the checkpoint
   * moves past them in the same write (never backwards), so that lag and "caught up" reach 0 on a
   * transactionally written topic.
   */
  through?: bigint;
  /** Apply event by event, each in a savepoint (after the batch failed with a non-transient error). */
  perEvent?: boolean;
}

/**
 * Apply one batch of one partition in ONE transaction: the handlers' effects, the dead-letter records
 * and the checkpoint (projection, generation, topic, partition, last offset) commit together, so every
 * message takes effect exactly once however often Kafka redelivers it. Messages at or below the stored
 * offset, and events whose event_id was applied before, are skipped. Dead letters are published
 * (`publish`) before the commit: a crash in between republishes them, never loses them.
 *
 * A batch whose first new offset is past the checkpoint + 1, and that was not read from the checkpoint
 * + 1 or earlier (`readFrom`), was fetched from somewhere else (Kafka's committed offset, ahead of a
 * restored database): it is refused (nothing applied, `gap` returned) and the caller seeks back.
 * Transient failures are thrown (the caller retries the batch); nothing else is.
 */
export async function applyAndCheckpoint(batch: ApplyBatch): Promise<ApplyResult> {
  const { pool, target, topic, partition, messages, publish, perEvent = false } = batch;
  const { projection, outboxSchema, logger } = target;
  const o = ident(outboxSchema);
  const client = await pool.connect();
  let released = false;
  let spans = new Map<ProjectedEvent, Span>();
  try {
    const lockKey = target.generation === 'live' ? liveLockKey(outboxSchema, projection.name) : shadowLockKey(outboxSchema, projection.name, target.generation);
    // One round trip (a multi-statement simple query, values as literals): BEGIN, the projection's shared
    // lock (a swap holds it exclusively), then the generation (read after the lock: a swap committed
    // before is seen) and the checkpoint row, created if needed, locked and read.
    const lit = (v: string): string => client.escapeLiteral(v);
    const int = (n: number): string => {
      if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
      return String(n);
    };
    const opened = (await client.query(
      `BEGIN; SELECT pg_advisory_xact_lock_shared(hashtext(${lit(lockKey)}));
       ${
         target.generation === 'live'
           ? `INSERT INTO ${o}.projector_offsets (projection, generation, topic, partition, last_offset)
                SELECT ${lit(projection.name)}, live_generation, ${lit(topic)}, ${int(partition)}, -1 FROM ${o}.projector_projections WHERE projection = ${lit(projection.name)}`
           : `INSERT INTO ${o}.projector_offsets (projection, generation, topic, partition, last_offset)
                VALUES (${lit(projection.name)}, ${int(target.generation)}, ${lit(topic)}, ${int(partition)}, -1)`
       }
       ON CONFLICT (projection, generation, topic, partition) DO UPDATE SET last_offset = ${o}.projector_offsets.last_offset
       RETURNING generation, last_offset::text AS last_offset`,
    )) as unknown as pg.QueryResult<{ generation: number; last_offset: string }>[];
    const cp = opened[2]!;
    if (!cp.rows[0]) throw new Error(`projection ${projection.name} has no live generation (ensureLiveGeneration first)`);
    const generation = cp.rows[0].generation;
    const stored = BigInt(cp.rows[0]?.last_offset ?? '-1');
    const fresh = messages.filter((m) => m.offset > stored);
    const result: ApplyResult = { generation, applied: 0, skippedOffsets: messages.length - fresh.length, skippedDuplicates: 0, deadLettered: [], lastOffset: null };
    const where = `projection = ${client.escapeLiteral(projection.name)} AND generation = ${generation} AND topic = ${client.escapeLiteral(topic)} AND partition = ${partition}`;
    const setCheckpoint = (last: bigint): string => {
      const to = batch.through !== undefined && batch.through > last ? batch.through : last;
      return `UPDATE ${o}.projector_offsets SET last_offset = ${to.toString()}, updated_at = now() WHERE ${where};`;
    };
    if (fresh.length === 0) {
      // Redelivered: only the offsets past the batch's records (markers) may be new.
      await client.query(batch.through !== undefined && batch.through > stored ? `${setCheckpoint(stored)}\n       COMMIT` : 'COMMIT');
      return result;
    }
    const expected = stored + 1n;
    const first = fresh[0]!.offset;
    if (first > expected && (batch.readFrom === undefined || batch.readFrom > expected)) {
      await client.query('ROLLBACK');
      result.skippedOffsets = 0;
      result.gap = { expected, first };
      logger.warn(
        { projection: projection.name, generation, topic, partition, checkpoint: stored.toString(), firstOffset: first.toString(), readFrom: batch.readFrom?.toString() },
        `batch refused: it starts at offset ${first} but the checkpoint is at ${stored}; seeking back to ${expected}`,
      );
      return result;
    }

    // Known event_ids are skipped (a re-published event at a new offset).
    const ok = fresh.flatMap((m) => (m.ok ? [m] : []));
    const firstTime = new Set<string>();
    if (ok.length > 0) {
      const ins = await client.query<{ event_id: string }>(
        `INSERT INTO ${o}.projector_seen_events (projection, generation, event_id, topic, partition, "offset")
         SELECT $1, $2, e, $4, $5, x.o FROM unnest($3::text[], $6::bigint[]) AS x(e, o)
         ON CONFLICT DO NOTHING RETURNING event_id`,
        [projection.name, generation, ok.map((m) => m.item.event.eventId), topic, partition, ok.map((m) => m.offset.toString())],
      );
      for (const r of ins.rows) firstTime.add(r.event_id);
    }
    const events: ProjectedEvent[] = [];
    for (const m of fresh) {
      if (!m.ok) continue;
      if (firstTime.delete(m.item.event.eventId)) events.push(m.item);
      else result.skippedDuplicates++;
    }

    const pgSchema = generationSchema(outboxSchema, projection.name, generation);
    const ctx: ApplyContext = {
      client,
      projection: projection.name,
      generation,
      pgSchema,
      outboxSchema,
      table: (name) => `${ident(pgSchema)}.${ident(name)}`,
      logger,
      rebuilding: target.generation !== 'live',
      snapshotEvery: target.snapshotEvery,
    };
    // One consumer span per event, a child of the producer's (the record's traceparent), around its
    // handler; ended when the checkpoint transaction commits or fails.
    spans = new Map(events.map((e) => [e, processSpan(e, projection.name, generation)]));
    const rejections = await runHandlers({ client, projection, events, ctx, perEvent, spans });
    result.applied = events.length;

    const letters: DeadLetter[] = [];
    for (const m of fresh) if (!m.ok) letters.push({ source: m.source, kind: m.kind, reason: m.reason, projection: '' });
    for (const r of rejections) {
      const e = events[r.index];
      if (e) letters.push({ source: e.source, kind: 'handler_rejected', reason: r.reason, projection: projection.name });
    }
    if (letters.length > 0) {
      const rec = await client.query<{ topic: string; partition: number; offset: string; projection: string }>(
        `INSERT INTO ${o}.projector_dead_letters (topic, partition, "offset", projection, kind, reason, dlq_topic, event_id)
         SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
         ON CONFLICT DO NOTHING RETURNING topic, partition, "offset"::text AS offset, projection`,
        [
          letters.map((d) => d.source.topic),
          letters.map((d) => d.source.partition),
          letters.map((d) => d.source.offset),
          letters.map((d) => d.projection),
          letters.map((d) => d.kind),
          letters.map((d) => d.reason),
          letters.map((d) => `${d.source.topic}.dlq`),
          letters.map((d) => (d.kind === 'handler_rejected' ? (events.find((e) => e.source === d.source)?.event.eventId ?? null) : null)),
        ],
      );
      const isNew = new Set(rec.rows.map((r) => `${r.topic}/${r.partition}/${r.offset}/${r.projection}`));
      const toPublish = letters.filter((d) => isNew.has(`${d.source.topic}/${d.source.partition}/${d.source.offset}/${d.projection}`));
      if (toPublish.length > 0) {
        await publish(toPublish);
        for (const d of toPublish)
          logger.warn(
            { projection: projection.name, topic: d.source.topic, partition: d.source.partition, offset: d.source.offset, kind: d.kind, reason: d.reason },
            'message sent to the dead-letter topic',
          );
      }
      result.deadLettered = toPublish;
    }

    const last = messages.reduce((a, m) => (m.offset > a ? m.offset : a), stored);
    // The event_ids applied far below the new checkpoint are forgotten (see duplicateWindow).
    const forgetBelow = last - BigInt(target.duplicateWindow ?? DUPLICATE_WINDOW);
    await client.query(
      `${forgetBelow > 0n ? `DELETE FROM ${o}.projector_seen_events WHERE ${where} AND "offset" < ${forgetBelow.toString()};\n` : ''}${setCheckpoint(last)}
       COMMIT`,
    );
    result.lastOffset = last;
    endSpans(spans.values());
    return result;
  } catch (err) {
    endSpans(spans.values(), err);
    await client.query('ROLLBACK').catch(() => undefined);
    if (err instanceof BatchFailed) {
      client.release();
      released = true;
      target.logger.debug({ projection: projection.name, err: err.cause }, 'batch apply failed; applying event by event');
      return applyAndCheckpoint({ ...batch, perEvent: true });
    }
    if (isRetriable(err)) {
      // The connection may be broken: do not return it to the pool.
      client.release(err instanceof Error ? err : true);
      released = true;
    }
    throw err;
  } finally {
    if (!released) client.release();
  }
}

/** The fast path failed with a non-transient error: the batch is re-applied event by event. */
class BatchFailed extends Error {
  constructor(override readonly cause: unknown) {
    super(`batch apply failed: ${errorMessage(cause)}`);
  }
}

/**
 * Run the projection over the events: the batch fast path (or every handler) without savepoints; if
 * that throws a non-transient error the whole transaction is redone (`perEvent`) event by event, each
 * in its own savepoint, so that only the failing events are rejected.
 */
interface RunHandlers {
  client: pg.PoolClient;
  projection: Projection;
  events: ProjectedEvent[];
  ctx: ApplyContext;
  /** Event by event, each in its own savepoint (the redo after a failed batch). */
  perEvent: boolean;
  spans: ReadonlyMap<ProjectedEvent, Span>;
}

async function runHandlers({ client, projection, events, ctx, perEvent, spans }: RunHandlers): Promise<BatchRejection[]> {
  const handle = (e: ProjectedEvent, handler: NonNullable<Projection['handlers'][string]>) => {
    const span = spans.get(e);
    return span ? context.with(trace.setSpan(context.active(), span), () => handler(e, ctx)) : handler(e, ctx);
  };
  if (events.length === 0) return [];
  if (!perEvent) {
    try {
      if (projection.applyBatch) return await projection.applyBatch(events, ctx);
      const rejections: BatchRejection[] = [];
      for (let i = 0; i < events.length; i++) {
        const e = events[i]!;
        const handler = projection.handlers[e.event.eventType];
        if (!handler) continue;
        const r = await handle(e, handler);
        if (r && 'rejected' in r) rejections.push({ index: i, reason: r.rejected });
      }
      return rejections;
    } catch (err) {
      if (isRetriable(err)) throw err;
      throw new BatchFailed(err);
    }
  }
  const rejections: BatchRejection[] = [];
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    const handler = projection.handlers[e.event.eventType];
    if (!handler) continue;
    await client.query('SAVEPOINT projector_event');
    try {
      const r = await handle(e, handler);
      if (r && 'rejected' in r) {
        await client.query('ROLLBACK TO SAVEPOINT projector_event');
        rejections.push({ index: i, reason: r.rejected });
      } else {
        await client.query('RELEASE SAVEPOINT projector_event');
      }
    } catch (err) {
      if (isRetriable(err)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT projector_event');
      rejections.push({ index: i, reason: `handler for ${e.event.eventType} failed: ${errorMessage(err)}` });
    }
  }
  return rejections;
}

/** The consumer span of one event: `process <topic>`, a child of the context in its traceparent header. */
function processSpan(e: ProjectedEvent, projection: string, generation: number): Span {
  const raw = e.source.headers.traceparent;
  const parent = Buffer.isBuffer(raw) ? raw.toString('utf8') : typeof raw === 'string' ? raw : null;
  return startMessagingSpan({
    operation: 'process',
    topic: e.source.topic,
    parent,
    eventId: e.event.eventId,
    key: e.event.aggregateId,
    partition: e.source.partition,
    offset: e.source.offset,
    attributes: { 'kafka_outbox.projection': projection, 'kafka_outbox.generation': generation, 'kafka_outbox.event_type': e.event.eventType },
  });
}
