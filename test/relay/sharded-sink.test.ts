import { OutboxError } from '../../core/errors';
import type { PublishOutcome, Sink } from '../../relay/kafka-sink';
import type { EncodedEvent } from '../../relay/publish-batch';
import { ShardedSink } from '../../relay/sharded-sink';

// The sharded relay's destination without a broker: a producer per shard (here a recording fake in
// place of a transactional KafkaSink). Claiming a shard's producer (InitProducerId) is what a handover
// waits for, so a producer is claimed again only when it has to be: one shard's failed publish costs
// that shard's producer, not every shard's.
class FakeShardSink implements Sink {
  failNext: Error | undefined;
  constructor(
    readonly transactionalId: string,
    private readonly log: string[],
  ) {}
  async prepare(): Promise<void> {
    this.log.push(`prepare ${this.transactionalId}`);
  }
  async publish(batch: EncodedEvent[]): Promise<PublishOutcome> {
    const err = this.failNext;
    this.failNext = undefined;
    if (err) throw err;
    return { deliveries: batch.map((e) => ({ id: e.event.id, topic: e.topic, partition: 0, offset: '0' }) as never), refused: [] };
  }
  async reset(): Promise<void> {
    this.log.push(`reset ${this.transactionalId}`);
  }
}

function setup(): { sink: ShardedSink; log: string[]; live: Map<number, FakeShardSink>; owned: number[] } {
  const log: string[] = [];
  const live = new Map<number, FakeShardSink>();
  const owned: number[] = [];
  const sink = new ShardedSink(
    {
      sinkFor: ({ shard, transactionalId }) => {
        const s = new FakeShardSink(transactionalId, log);
        live.set(shard, s);
        return s;
      },
      baseTransactionalId: (outbox) => `relay.${outbox}`,
    },
    () => owned,
  );
  return { sink, log, live, owned };
}

const event = (id: number, shard: number): EncodedEvent => ({ event: { id: String(id), eventId: `e${id}`, shard } as never, topic: 't', value: Buffer.alloc(0) });

test("one shard's failed publish claims that shard's producer again, not the others'", async () => {
  const { sink, log, live, owned } = setup();
  await sink.prepare({ topics: ['t'], outboxName: 'db.outbox' });
  await sink.take([0, 1, 2]);
  owned.push(0, 1, 2);
  expect(log.filter((l) => l.startsWith('prepare')).sort()).toEqual(['prepare relay.db.outbox.shard-0', 'prepare relay.db.outbox.shard-1', 'prepare relay.db.outbox.shard-2']);
  log.length = 0;

  live.get(1)!.failNext = new OutboxError('KAFKA_UNAVAILABLE', 'request timed out');
  await expect(sink.publish([event(1, 0), event(2, 1), event(3, 2)])).rejects.toThrow('request timed out');
  // The relay prepares the sink again before its next claim: only shard 1 needs a new producer.
  await sink.prepare({ topics: ['t'], outboxName: 'db.outbox' });
  expect(log).toEqual(['reset relay.db.outbox.shard-1', 'prepare relay.db.outbox.shard-1']);
  await expect(sink.publish([event(4, 0), event(5, 1), event(6, 2)])).resolves.toMatchObject({ refused: [] });
});

test('a take claims a producer anew, a claim in progress finishes before its shard is dropped, and reset closes all', async () => {
  const { sink, log, owned } = setup();
  await sink.prepare({ topics: ['t'], outboxName: 'db.outbox' });
  await sink.take([3]);
  owned.push(3);
  // Taken again (a new lock on it): a new producer, fencing whatever had it since.
  await sink.take([3]);
  expect(log).toEqual(['prepare relay.db.outbox.shard-3', 'reset relay.db.outbox.shard-3', 'prepare relay.db.outbox.shard-3']);
  log.length = 0;
  const taking = sink.take([4]);
  const dropping = sink.drop([4]);
  await Promise.all([taking, dropping]);
  expect(log).toEqual(['prepare relay.db.outbox.shard-4', 'reset relay.db.outbox.shard-4']);
  await expect(sink.publish([event(1, 4)])).rejects.toThrow(/no producer for that shard/);
  log.length = 0;
  const late = sink.take([5]);
  await sink.reset();
  await late;
  expect(log.sort()).toEqual(['prepare relay.db.outbox.shard-5', 'reset relay.db.outbox.shard-3', 'reset relay.db.outbox.shard-5']);
});
