import { Partitioners, type Admin, type Kafka, type Producer } from 'kafkajs';
import type pg from 'pg';
import type { OutboxConfig } from '../core/config';
import { errorMessage, OutboxError } from '../core/errors';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { createPool, isTransientPgError } from '../core/pg';
import { Leadership } from './acquire-leadership';
import { createBackoff, sleep } from '../core/backoff';
import { analyzeQueue, claimBatch } from './claim-batch';
import { cleanDelivered } from './clean-delivered';
import { encodeBatch, type EventEncoderPort } from './encode-batch';
import { TopicDirectory } from './ensure-topics';
import { markDelivered, type Delivery } from './mark-delivered';
import { parkEvent } from './park-event';
import { publishBatch, type EncodedEvent } from './publish-batch';

/** Hooks for metrics; every method is optional. */
export interface RelayObserver {
  /** `latenciesMs[i]` (commit → ack) and `topics[i]` belong to the same published event. */
  published?(count: number, latenciesMs: number[], topics?: string[]): void;
  parked?(eventId: string, reason: string): void;
  failed?(stage: 'claim' | 'encode' | 'publish' | 'mark' | 'leadership', err: unknown): void;
  leadership?(isLeader: boolean): void;
}

export interface RelayOptions {
  config: OutboxConfig;
  logger: Logger;
  kafka: Kafka;
  encoder: EventEncoderPort;
  observer?: RelayObserver;
  /** How often a standby tries to take over (default 1000 ms). */
  standbyPollMs?: number;
  /** How often delivered bookkeeping is cleaned (default 60 s). */
  cleanIntervalMs?: number;
  /** Topics to create at start-up (those of the aggregate types the schema catalog knows). */
  startupTopics?: string[];
}

export interface RelayHandle {
  /** Finish the in-flight batch, release leadership and connections. */
  stop(): Promise<void>;
  /** Settles when the relay has stopped. */
  readonly done: Promise<void>;
  readonly isLeader: () => boolean;
}

/**
 * The publishing loop: become leader, then repeatedly claim the oldest pending events, encode them
 * through the registry's schemas, publish them in one acknowledged send, and record the deliveries.
 * Any failure (PostgreSQL, Kafka, registry) backs off with jitter and retries; nothing is marked
 * delivered before the broker acknowledged it, so nothing is lost (at-least-once; a re-publish after a
 * crash carries the same event_id).
 */
export function runRelay(options: RelayOptions): RelayHandle {
  const { config, kafka, encoder, observer } = options;
  const schema = config.schema;
  const settings = config.relay;
  const log = options.logger.child({ component: 'relay', instance: settings.instanceId });
  const abort = new AbortController();
  let wake: (() => void) | null = null;
  let notified = false;
  const onNotify = (): void => {
    notified = true;
    wake?.();
  };
  const untrack = trackRunning('relay', settings.instanceId);
  const leadership = new Leadership({ databaseUrl: config.databaseUrl, schema, logger: log, onNotify });
  let pool: pg.Pool | null = null;
  let producer: Producer | null = null;
  let admin: Admin | null = null;
  let topics: TopicDirectory | null = null;
  let unmarked: Delivery[] = [];
  let prepared = false;
  let lastAnalyze = 0;

  async function waitForWork(ms: number): Promise<void> {
    if (notified || abort.signal.aborted) return;
    const inner = new AbortController();
    wake = () => inner.abort();
    const onAbort = (): void => inner.abort();
    abort.signal.addEventListener('abort', onAbort, { once: true });
    await sleep(ms, inner.signal);
    abort.signal.removeEventListener('abort', onAbort);
    wake = null;
  }

  async function connectKafka(): Promise<void> {
    if (!producer) {
      const p = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        // Partitions are assigned in publish-batch.ts with this same murmur2 partitioner.
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      await p.connect();
      producer = p;
    }
    if (!admin) {
      const a = kafka.admin();
      await a.connect();
      admin = a;
      topics = new TopicDirectory(a, { partitions: settings.topicPartitions, logger: log });
    }
  }

  async function resetKafka(): Promise<void> {
    const p = producer;
    const a = admin;
    producer = null;
    admin = null;
    topics = null;
    await Promise.allSettled([p?.disconnect(), a?.disconnect()]);
  }

  interface Prepared {
    claimed: number;
    encoded: EncodedEvent[];
  }

  /** Claim the oldest pending events (except those in flight), encode them, park the poison. */
  async function prepare(db: pg.Pool, inFlight: string[]): Promise<Prepared> {
    const claimStarted = Date.now();
    const batch = await at('claim', claimBatch(db, schema, settings.batchSize, inFlight));
    const claimMs = Date.now() - claimStarted;
    if (claimMs > 250 && batch.length === settings.batchSize && Date.now() - lastAnalyze > 60_000) {
      // A full batch that was slow to claim: the queue probably grew faster than autovacuum analyzes it.
      lastAnalyze = Date.now();
      log.info({ claimMs }, 'slow claim of a full batch: refreshing the delivery queue statistics');
      await at('claim', analyzeQueue(db, schema));
    }
    if (batch.length === 0) return { claimed: 0, encoded: [] };
    const { encoded, poison } = await at('encode', encodeBatch(encoder, batch, settings));
    for (const p of poison) {
      await at('mark', parkEvent(db, schema, p.event.id, p.reason));
      log.error(
        { eventId: p.event.eventId, aggregateType: p.event.aggregateType, aggregateId: p.event.aggregateId, aggregateVersion: p.event.aggregateVersion, reason: p.reason },
        `parked event ${p.event.eventId}: ${p.reason}`,
      );
      observer?.parked?.(p.event.eventId, p.reason);
    }
    return { claimed: batch.length, encoded };
  }

  function publish(encoded: EncodedEvent[]): Promise<Delivery[]> {
    return at(
      'publish',
      (async () => {
        await connectKafka();
        const dir = topics!;
        await dir.ensure(encoded.map((e) => e.topic));
        return publishBatch(
          producer!,
          encoded,
          (t) => dir.partitionCount(t) ?? settings.topicPartitions,
          config.kafka.requestTimeoutMs,
          Math.floor(settings.maxMessageBytes * 0.9),
        );
      })(),
    );
  }

  /**
   * Claim → encode → publish → mark, pipelined while there is a full batch of work: the next batch is
   * claimed and encoded while the current one is being sent, but it is sent only after the current one
   * was acknowledged (one send in flight), so an aggregate's events reach the partition in order. If a
   * send fails, the prepared next batch is dropped and everything unacknowledged is claimed again.
   * Returns the number of events handled.
   */
  async function cycle(db: pg.Pool): Promise<number> {
    if (unmarked.length > 0) {
      await at('mark', markDelivered(db, schema, unmarked));
      unmarked = [];
    }
    notified = false;
    let current = await prepare(db, []);
    let handled = 0;
    while (current.claimed > 0) {
      if (current.encoded.length === 0) {
        handled += current.claimed;
        if (current.claimed < settings.batchSize || abort.signal.aborted) break;
        current = await prepare(db, []);
        continue;
      }
      const sending = publish(current.encoded);
      // Keep pipelining only while this instance still leads (a standby may already have taken over).
      const more = current.claimed === settings.batchSize && !abort.signal.aborted && leadership.isLeader;
      const nextPrepared = more ? prepare(db, current.encoded.map((e) => e.event.id)) : Promise.resolve<Prepared>({ claimed: 0, encoded: [] });
      let deliveries: Delivery[];
      try {
        deliveries = await sending;
      } catch (err) {
        await nextPrepared.catch(() => undefined);
        throw err;
      }
      const ackedAt = Date.now();
      const marking = at('mark', markDelivered(db, schema, deliveries)).catch((err: unknown) => {
        unmarked = deliveries; // acknowledged by the broker: recorded first thing next cycle
        throw err;
      });
      const settled = await Promise.allSettled([marking, nextPrepared]);
      for (const r of settled) if (r.status === 'rejected') throw r.reason;
      observer?.published?.(
        deliveries.length,
        current.encoded.map((e) => ackedAt - Date.parse(e.event.occurredAt)),
        current.encoded.map((e) => e.topic),
      );
      handled += current.claimed;
      current = (settled[1] as PromiseFulfilledResult<Prepared>).value;
    }
    return handled;
  }

  async function loop(): Promise<void> {
    const backoff = createBackoff(100, 10_000);
    let lastClean = 0;
    let wasLeader = false;
    while (!abort.signal.aborted) {
      try {
        if (!leadership.isLeader) {
          if (wasLeader) {
            wasLeader = false;
            observer?.leadership?.(false);
          }
          if (!(await at('leadership', leadership.tryAcquire()))) {
            await sleep(options.standbyPollMs ?? 1000, abort.signal);
            continue;
          }
          wasLeader = true;
          observer?.leadership?.(true);
          log.info('became the active relay');
          // A backlog may have built up while no relay ran: plan the claims with fresh statistics.
          if (!pool) pool = createPool(config.databaseUrl, log, { max: 2, applicationName: 'kafka-outbox-relay' });
          lastAnalyze = Date.now();
          await at('claim', analyzeQueue(pool, schema));
          notified = true; // look for work straight away
        }
        if (!prepared) {
          await at('encode', encoder.prepare());
          await at(
            'publish',
            (async () => {
              await connectKafka();
              await topics!.ensure(options.startupTopics ?? []);
            })(),
          );
          prepared = true;
        }
        if (!pool) pool = createPool(config.databaseUrl, log, { max: 2, applicationName: 'kafka-outbox-relay' });
        const handled = await cycle(pool);
        backoff.reset();
        if (Date.now() - lastClean > (options.cleanIntervalMs ?? 60_000)) {
          lastClean = Date.now();
          const removed = await at('claim', cleanDelivered(pool, schema, settings.deliveredRetentionMs));
          if (removed > 0) log.info({ removed }, 'removed delivery bookkeeping past retention');
        }
        if (handled < settings.batchSize) await waitForWork(settings.pollIntervalMs);
      } catch (err) {
        const delay = backoff.next();
        const stage = stageOf(err);
        observer?.failed?.(stage, err);
        log.warn({ err, stage, retryInMs: delay, failures: backoff.failures }, `relay ${stage} failed, retrying in ${delay} ms: ${errorMessage(err)}`);
        if (stage === 'publish') await resetKafka();
        if (stage === 'claim' || stage === 'mark' || stage === 'leadership') {
          if (!leadership.isLeader || isTransientPgError(err)) await leadership.release();
        }
        await sleep(delay, abort.signal);
      }
    }
  }

  const done = loop()
    .catch((err) => {
      log.fatal({ err }, 'relay loop crashed');
      throw err;
    })
    .finally(async () => {
      await resetKafka();
      await leadership.release();
      await pool?.end().catch(() => undefined);
      pool = null;
      untrack();
      log.info('relay stopped');
    });

  return {
    async stop() {
      abort.abort();
      await done.catch(() => undefined);
    },
    done,
    isLeader: () => leadership.isLeader,
  };
}

type Stage = 'claim' | 'encode' | 'publish' | 'mark' | 'leadership';
const STAGE = Symbol('relayStage');

/** Tag a failure with the step it happened in (the step decides what to reset before retrying). */
async function at<T>(stage: Stage, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err !== null && typeof err === 'object') (err as Record<symbol, Stage>)[STAGE] ??= stage;
    throw err;
  }
}

function stageOf(err: unknown): Stage {
  return (err !== null && typeof err === 'object' ? (err as Record<symbol, Stage | undefined>)[STAGE] : undefined) ?? 'publish';
}
