import { Partitioners } from 'kafkajs';
import { errorMessage, OutboxError } from '../core/errors';
import { ident } from '../core/pg';
import { sleep } from '../core/retry';
import { consumeBatches } from './consume-batch';
import type { Offsets, PreparedShadow, RebuildRun } from './rebuild-prepare';

export interface RebuildProgress {
  projection: string;
  generation: number;
  phase: 'catching_up' | 'swapping' | 'comparing' | 'done';
  /** Events consumed into the shadow so far (applied, already applied or dead-lettered). */
  processed: number;
  /** Events consumed plus offsets still to consume (grows while events keep flowing; an estimate on a transactionally written topic, whose markers take offsets). */
  total: number;
  eventsPerSecond: number;
  /** Seconds until caught up at the current rate (null: unknown). */
  etaSeconds: number | null;
  ratio: number;
}

export interface CatchUpOptions {
  run: RebuildRun;
  prepared: PreparedShadow;
  onProgress(p: RebuildProgress): void;
  /** How often progress is reported while catching up. */
  progressIntervalMs: number;
  sessionTimeoutMs?: number;
  /** Stop waiting for the shadow to catch up after this long since the rebuild started (default: no limit). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** The shadow's consumer, running. */
export interface CatchUp {
  /**
   * Resolves once the consumer has read every partition up to its last stable offset, reporting progress
   * meanwhile; throws when aborted, past the timeout, or when the rebuild lock's connection is lost.
   */
  untilCaughtUp(): Promise<void>;
  /** The progress now, in a phase (the rebuild metrics are set from it). */
  progress(phase: RebuildProgress['phase']): RebuildProgress;
  /** Stop consuming into the shadow. */
  stop(): Promise<void>;
}

/** What the shadow's consumer has handled so far. */
interface Consumed {
  /** Per partition, the consumer's position (the next offset it fetches; transaction markers passed). */
  position: Offsets;
  /** Events handled: applied, already applied, dead-lettered (offsets also count transaction markers). */
  events: number;
}

/** Catch up: a consumer group of its own applies the topics to the shadow, from its seeded checkpoints. */
export async function startCatchUp(o: CatchUpOptions): Promise<CatchUp> {
  const { run, prepared } = o;
  const { config, kafka, pool, projection, held } = run;
  const { generation } = prepared.shadow;
  const consumed: Consumed = { position: new Map(prepared.start), events: 0 };
  held.producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner });
  await held.producer.connect();
  held.consumer = await consumeBatches({
    kafka,
    pool,
    decoder: run.decoder,
    producer: held.producer,
    target: { projection, outboxSchema: config.projector.schema, generation, snapshotEvery: config.projector.snapshotEvery, logger: run.logger },
    groupId: run.groupId,
    topics: projection.topics,
    batchSize: Math.max(config.projector.batchSize, 2000),
    ...(o.sessionTimeoutMs !== undefined ? { sessionTimeoutMs: o.sessionTimeoutMs } : {}),
    partitionsConsumedConcurrently: 2,
    async startOffset(topic, partition) {
      const { rows } = await pool.query<{ last_offset: string }>(
        `SELECT last_offset FROM ${ident(config.projector.schema)}.projector_offsets WHERE projection = $1 AND generation = $2 AND topic = $3 AND partition = $4`,
        [projection.name, generation, topic, partition],
      );
      const stored = rows[0] ? BigInt(rows[0].last_offset) : -1n;
      if (stored >= 0n) return (stored + 1n).toString();
      return (prepared.start.get(`${topic}/${partition}`) ?? 0n).toString();
    },
    onApplied(_topic, _partition, result) {
      consumed.events += result.applied + result.skippedDuplicates + result.deadLettered.length;
    },
    // The consumer's position, past transaction markers: compared with the last stable offsets.
    onPosition(topic, partition, { next }) {
      const k = `${topic}/${partition}`;
      if (next > (consumed.position.get(k) ?? -1n)) consumed.position.set(k, next);
    },
    logger: run.logger.child({ projection: projection.name, generation }),
    ...(run.metrics ? { metrics: run.metrics } : {}),
  });
  const progress = progressOf(run, prepared, consumed);
  return {
    untilCaughtUp: caughtUpWaiter(o, consumed, progress),
    progress,
    async stop() {
      await held.consumer?.stop();
      held.consumer = undefined;
    },
  };
}

/** Progress: events handled so far; the ratio and the time left from offsets (markers included). */
function progressOf(run: RebuildRun, prepared: PreparedShadow, consumed: Consumed): CatchUp['progress'] {
  const { metrics, started } = run;
  const { start, high } = prepared;
  const name = run.projection.name;
  let counted = 0; // events already added to the rebuild counter
  return (phase) => {
    let passed = 0n;
    let remaining = 0n;
    for (const [k, s] of start) {
      const pos = consumed.position.get(k) ?? s;
      passed += pos - s;
      const h = high.get(k) ?? pos;
      // Once swapped (or compared), what arrived since is the live generation's: nothing remains.
      if (h > pos && phase !== 'done') remaining += h - pos;
    }
    const seconds = (Date.now() - started) / 1000;
    const offsetRate = seconds > 0 ? Number(passed) / seconds : 0;
    const total = Number(passed + remaining);
    const p: RebuildProgress = {
      projection: name,
      generation: prepared.shadow.generation,
      phase,
      processed: consumed.events,
      total: consumed.events + Number(remaining),
      eventsPerSecond: Math.round(seconds > 0 ? consumed.events / seconds : 0),
      etaSeconds: remaining === 0n ? 0 : offsetRate > 0 ? Number(remaining) / offsetRate : null,
      ratio: total === 0 ? 1 : Number(passed) / total,
    };
    metrics?.rebuildProgress.set({ projection: name }, p.ratio);
    metrics?.rebuildEventsPerSecond.set({ projection: name }, p.eventsPerSecond);
    if (p.processed > counted) {
      metrics?.rebuildEventsTotal.inc({ projection: name }, p.processed - counted);
      counted = p.processed;
    }
    return p;
  };
}

/** CatchUp.untilCaughtUp: polls the consumer's position against the topics' ends every 100 ms. */
function caughtUpWaiter(o: CatchUpOptions, consumed: Consumed, progress: CatchUp['progress']): CatchUp['untilCaughtUp'] {
  const { run, prepared } = o;
  const { admin, projection } = run;
  const { start, high } = prepared;
  const name = projection.name;
  let lastReport = 0;
  let lockCheckedAt = Date.now();
  const refreshHigh = async (): Promise<void> => {
    for (const topic of projection.topics) for (const p of await admin.fetchTopicOffsets(topic)) high.set(`${topic}/${p.partition}`, BigInt(p.high));
  };
  return async () => {
    for (;;) {
      if (o.signal?.aborted) throw new OutboxError('SHUTDOWN', `rebuild of ${name} aborted`);
      if (o.timeoutMs !== undefined && Date.now() - run.started > o.timeoutMs) throw new OutboxError('INTERNAL', `rebuild of ${name} did not catch up within ${o.timeoutMs} ms`);
      await sleep(100, o.signal);
      if (Date.now() - lockCheckedAt >= 5000) {
        // The rebuild lock lives as long as its connection: a lost connection means another rebuild may start.
        await run.held.lock?.query('SELECT 1').catch((err: unknown) => {
          throw new OutboxError('FENCED', `rebuild of ${name}: the connection holding the rebuild lock was lost (${errorMessage(err)})`, { cause: err });
        });
        lockCheckedAt = Date.now();
      }
      // Caught up: the consumer has fetched every partition up to its last stable offset (admin offsets are
      // read_committed), markers included; never "last applied + 1 = high watermark", which a topic written
      // in transactions never satisfies. The offsets are those read on the previous round: a topic under
      // constant writes rarely has every partition at its end at one moment, and the swap itself waits,
      // with live paused, for the exact offsets live has.
      const caughtUp = [...high].every(([k, h]) => (consumed.position.get(k) ?? start.get(k) ?? 0n) >= h);
      await refreshHigh();
      if (caughtUp || Date.now() - lastReport >= o.progressIntervalMs) {
        lastReport = Date.now();
        o.onProgress(progress('catching_up'));
      }
      if (caughtUp) return;
    }
  };
}
