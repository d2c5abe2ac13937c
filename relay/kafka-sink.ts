import { Partitioners, type Admin, type Kafka, type Producer } from 'kafkajs';
import { errorMessage, OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { kafkaErrorType } from '../core/retry';
import { TopicDirectory } from './ensure-topics';
import type { Delivery } from './mark-delivered';
import type { PendingEvent } from './claim-batch';
import type { ReplicationSettings } from '../core/topics';
import { chunkBySize, finishSpans, prepareMessages, sendChunk, type EncodedEvent, type Outgoing, type ProduceTarget } from './publish-batch';

/** An event the destination refused for good (it is parked; its aggregate waits behind it). */
export interface Refused {
  event: PendingEvent;
  reason: string;
}

export interface PublishOutcome {
  /** What the destination acknowledged (committed, for a transactional sink). */
  deliveries: Delivery[];
  /** Events refused for what they are, not for an outage: to be parked. */
  refused: Refused[];
}

/**
 * Where the relay delivers events. `prepare` runs when this instance becomes the leader (and again
 * after a failed publish) and must claim the destination for it (fencing any previous leader); the
 * relay checks its leadership after `prepare` and before each claim. `publish` sends one claimed batch,
 * in order, and returns what was acknowledged; `reset` drops its connections (when the relay stops). A
 * sink resets itself when a publish fails, and fails with OutboxError('FENCED') when another leader has
 * taken the destination over.
 */
export interface Sink {
  prepare(options: { topics: string[]; outboxName: string }): Promise<void>;
  publish(batch: EncodedEvent[]): Promise<PublishOutcome>;
  reset(): Promise<void>;
}

export interface KafkaSinkOptions {
  kafka: Kafka;
  logger: Logger;
  /** Partitions of the topics the sink creates. */
  partitions: number;
  requestTimeoutMs: number;
  /** The broker's largest record batch (OUTBOX_KAFKA_MAX_MESSAGE_BYTES). */
  maxMessageBytes: number;
  /** One Kafka transaction per batch, fenced by transactional.id (true), or the idempotent producer alone (false). */
  transactional: boolean;
  /** Explicit transactional.id; default `kafka-outbox-relay.<outbox name>`. */
  transactionalId?: string;
  /** CloudEvents binary-mode headers (RelaySettings.cloudEvents). */
  cloudEvents?: { source: string };
  /** Replication of the topics it creates (OUTBOX_TOPIC_REPLICATION_FACTOR / _MIN_INSYNC_REPLICAS). */
  replication?: ReplicationSettings;
}

/** Kafka error types that mean another producer with our transactional.id took over. */
const FENCED_TYPES = new Set(['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED']);
/** Kafka error types that mean a record (batch) is larger than the broker or topic accepts. */
const TOO_LARGE_TYPES = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);
/** Kafka error types that refuse a record for what it is (size, timestamp): retrying it cannot help. */
const REFUSED_TYPES = new Set([...TOO_LARGE_TYPES, 'INVALID_TIMESTAMP']);

/** The transactional.id of the relays of one outbox. */
export function relayTransactionalId(outboxName: string): string {
  return `kafka-outbox-relay.${outboxName}`;
}

/**
 * The Kafka sink. Transactional (OUTBOX_RELAY_TRANSACTIONAL=true): the leader's producer has a transactional.id per
 * outbox, initialised when it becomes leader, which bumps the producer epoch and fences every older
 * producer with that id: a relay that lost leadership without noticing gets PRODUCER_FENCED on its next
 * send or commit, and steps down without marking anything. Each claimed batch is one transaction
 * (several produce requests when it is large, one after the other: never two sends in flight on one
 * producer, kafkajs#1005), committed before the deliveries are recorded. A record the broker refuses
 * as too large is isolated, refused (parked by the relay) and the batch is sent again without it and
 * without the later events of its aggregate.
 */
export class KafkaSink implements Sink {
  private producer: Producer | null = null;
  private admin: Admin | null = null;
  private topics: TopicDirectory | null = null;
  private transactionalId: string | undefined;

  constructor(private readonly options: KafkaSinkOptions) {}

  async prepare({ topics, outboxName }: { topics: string[]; outboxName: string }): Promise<void> {
    // A transactional producer is initialised anew for every leadership (that is what fences the
    // previous leader); the idempotent one keeps its connections across a step-down.
    if (this.options.transactional) await this.reset();
    this.transactionalId = this.options.transactional ? (this.options.transactionalId ?? relayTransactionalId(outboxName)) : undefined;
    try {
      const started = Date.now();
      await this.connect();
      if (this.transactionalId !== undefined) {
        this.options.logger.info(
          { transactionalId: this.transactionalId, ms: Date.now() - started },
          `Kafka producer initialised for transactional id ${this.transactionalId}: older producers with it are fenced`,
        );
      }
      await this.topics!.ensure(topics);
    } catch (err) {
      await this.reset();
      throw this.classify(err);
    }
  }

  async publish(batch: EncodedEvent[]): Promise<PublishOutcome> {
    try {
      return await this.publishOnce(batch);
    } catch (err) {
      await this.reset();
      throw this.classify(err);
    }
  }

  async reset(): Promise<void> {
    const p = this.producer;
    const a = this.admin;
    this.producer = null;
    this.admin = null;
    this.topics = null;
    await Promise.allSettled([p?.disconnect(), a?.disconnect()]);
  }

  private async connect(): Promise<void> {
    if (!this.admin) {
      const a = this.options.kafka.admin();
      await a.connect();
      this.admin = a;
      this.topics = new TopicDirectory(a, {
        partitions: this.options.partitions,
        logger: this.options.logger,
        ...(this.options.replication ? { replication: this.options.replication } : {}),
      });
    }
    if (!this.producer) {
      const p = this.options.kafka.producer({
        // A transactional producer's sends are idempotent anyway; initialising it as idempotent too would
        // cost a second InitProducerId, which waits while the coordinator aborts a deposed leader's transaction.
        idempotent: this.transactionalId === undefined,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        // Partitions are assigned in publish-batch.ts with this same murmur2 partitioner.
        createPartitioner: Partitioners.DefaultPartitioner,
        ...(this.transactionalId !== undefined
          ? {
              transactionalId: this.transactionalId,
              transactionTimeout: Math.max(60_000, this.options.requestTimeoutMs * 2),
              // Right after a commit the coordinator is still writing its markers and answers the next
              // transaction's first request with CONCURRENT_TRANSACTIONS: retry that soon (as the Java
              // client does), not after the client's default 200 ms.
              retry: { initialRetryTime: 10, maxRetryTime: 1000, retries: 10 },
            }
          : {}),
      });
      await p.connect();
      if (this.transactionalId !== undefined) {
        // InitProducerId for the transactional id: from here on, older producers with this id are fenced.
        const t = await p.transaction();
        await t.abort();
      }
      this.producer = p;
    }
  }

  private async publishOnce(batch: EncodedEvent[]): Promise<PublishOutcome> {
    if (this.transactionalId !== undefined && !this.producer) {
      // Initialising the transactional producer fences every other one: only `prepare` may do it, when
      // this instance has just become leader and before its lock check (never after a check, in a send).
      throw new OutboxError('INTERNAL', 'the transactional Kafka sink publishes only after prepare');
    }
    await this.connect();
    const dir = this.topics!;
    await dir.ensure(batch.map((e) => e.topic));
    const partitionCount = (t: string): number => dir.partitionCount(t) ?? this.options.partitions;
    const maxPartitionBytes = Math.floor(this.options.maxMessageBytes * 0.9);
    const refused: Refused[] = [];
    const delivered: Delivery[] = [];
    const isolated = new Set<string>();
    let pending = batch;
    for (;;) {
      const outgoing = prepareMessages(pending, partitionCount, { cloudEvents: this.options.cloudEvents, trace: true });
      const chunks = chunkBySize(outgoing, maxPartitionBytes, isolated);
      const sent: Delivery[] = [];
      let failed: Awaited<ReturnType<KafkaSink['send']>>;
      try {
        failed = await this.send(chunks, sent);
      } catch (err) {
        finishSpans(outgoing, [], err);
        throw err;
      }
      finishSpans(outgoing, sent, failed ? new Error(`the broker refused a record (${failed.type})`) : undefined);
      if (!failed) return { deliveries: [...delivered, ...sent], refused };
      // A record the broker refuses for what it is (too large, timestamp out of range). Transactional: everything of this attempt was aborted.
      // Idempotent: the chunks before the failed one are published; keep them.
      if (!this.transactionalId) {
        delivered.push(...sent);
        const done = new Set(sent.map((d) => d.id));
        pending = pending.filter((e) => !done.has(e.event.id));
      }
      if (failed.chunk.length > 1) {
        for (const m of failed.chunk) isolated.add(m.id);
        continue;
      }
      const bad = failed.chunk[0]!;
      const event = pending.find((e) => e.event.id === bad.id)!.event;
      refused.push({
        event,
        reason: TOO_LARGE_TYPES.has(failed.type)
          ? `the broker refused the record as too large (${failed.type}): ${bad.bytes} bytes with key and headers; OUTBOX_KAFKA_MAX_MESSAGE_BYTES=${this.options.maxMessageBytes}`
          : `the broker refused the record (${failed.type}): its timestamp is occurred_at ${event.occurredAt.toISOString()}, outside the topic's message.timestamp.before/after.max.ms`,
      });
      // The refused event and every later event of its aggregate stay unpublished (the aggregate waits behind it).
      const aggregate = (e: PendingEvent): string => `${e.aggregateType}\u0000${e.aggregateId}`;
      const blocked = aggregate(event);
      const at = pending.findIndex((e) => e.event.id === bad.id);
      pending = pending.filter((e, i) => i < at || aggregate(e.event) !== blocked);
      if (pending.length === 0) return { deliveries: delivered, refused };
    }
  }

  /**
   * Send the chunks one after the other (in one transaction when transactional) and collect the
   * acknowledged deliveries into `sent`. Returns the chunk the broker refused for good (after
   * aborting the transaction), or undefined when everything was acknowledged (and committed).
   */
  private async send(chunks: Outgoing[][], sent: Delivery[]): Promise<{ chunk: Outgoing[]; type: string } | undefined> {
    const producer = this.producer!;
    const transaction = this.transactionalId !== undefined ? await producer.transaction() : undefined;
    const target: ProduceTarget = transaction ?? producer;
    const timeoutMs = this.options.requestTimeoutMs;
    for (const chunk of chunks) {
      try {
        sent.push(...(await sendChunk(target, chunk, timeoutMs)));
      } catch (err) {
        const type = kafkaErrorType(err);
        if (transaction) {
          await transaction.abort().catch(() => undefined);
          sent.length = 0;
        }
        if (type !== undefined && REFUSED_TYPES.has(type)) return { chunk, type };
        throw err;
      }
    }
    await transaction?.commit();
    return undefined;
  }

  private classify(err: unknown): unknown {
    const type = kafkaErrorType(err);
    if (type !== undefined && FENCED_TYPES.has(type)) {
      return new OutboxError('FENCED', `another relay's producer took over transactional id ${this.transactionalId ?? '?'} (${type}): stepping down: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    return err;
  }
}
