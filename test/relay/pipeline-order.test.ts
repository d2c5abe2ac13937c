import type { RelaySettings } from '../../core/config';
import { isOutboxError, OutboxError } from '../../core/errors';
import { createLogger } from '../../core/logger';
import type { PendingEvent } from '../../relay/claim-batch';
import type { DeliveryQueue } from '../../relay/delivery-queue';
import type { EventEncoderPort } from '../../relay/encode-batch';
import type { Sink } from '../../relay/kafka-sink';
import { DeliveryPipeline } from '../../relay/pipeline';
import { failureOf } from '../../relay/relay-step';

// The order of the leadership check and the claim before each batch (pure logic: the parts are stand-ins
// that record what happened when). A sharded relay's check decides which shards it claims from, so its
// claim waits for it; one leader's check and claim (a read) run at once, and a failed check publishes
// nothing of what was claimed.

interface Recorder {
  events: string[];
  pipeline: DeliveryPipeline;
  published: number;
}

function setUp(options: { verifyShapesClaim: boolean; verify: () => Promise<void>; claimed?: PendingEvent[] }): Recorder {
  const r: Recorder = { events: [], pipeline: undefined as unknown as DeliveryPipeline, published: 0 };
  const queue = {
    claim: async () => {
      r.events.push('claim started');
      await new Promise((resolve) => setTimeout(resolve, 20));
      r.events.push('claim done');
      return { events: options.claimed ?? [], full: false };
    },
    analysisDue: () => false,
    mark: async () => undefined,
    park: async () => undefined,
  } as unknown as DeliveryQueue;
  const sink = {
    publish: async () => {
      r.published++;
      return { deliveries: [], refused: [] };
    },
  } as unknown as Sink;
  const encoder: EventEncoderPort = { prepare: async () => undefined, encode: async () => ({ ok: true, value: Buffer.from('x'), schemaId: 1 }) };
  r.pipeline = new DeliveryPipeline({
    leadership: {
      verifyShapesClaim: options.verifyShapesClaim,
      verify: async () => {
        r.events.push('verify started');
        await options.verify();
        r.events.push('verify done');
      },
    },
    queue,
    encoder,
    sink,
    settings: { batchSize: 10 } as RelaySettings,
    log: createLogger({ level: 'silent' }),
    stopping: new AbortController().signal,
  });
  return r;
}

const slowVerify = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 30));

test('a sharded relay claims only after its check has answered (the check decides the shards it claims from)', async () => {
  const r = setUp({ verifyShapesClaim: true, verify: slowVerify });
  await r.pipeline.deliver();
  expect(r.events).toEqual(['verify started', 'verify done', 'claim started', 'claim done']);
});

test('one leader checks its lock and claims at once (the claim is a read)', async () => {
  const r = setUp({ verifyShapesClaim: false, verify: slowVerify });
  await r.pipeline.deliver();
  expect(r.events.slice(0, 2).sort()).toEqual(['claim started', 'verify started']);
});

test('a failed check publishes nothing the claim beside it returned, and is reported as the leadership stage', async () => {
  const event = { id: '1', eventId: 'e1', aggregateType: 'user', aggregateId: 'u1', aggregateVersion: 1 } as unknown as PendingEvent;
  const r = setUp({
    verifyShapesClaim: false,
    claimed: [event],
    verify: async () => {
      await new Promise((resolve) => setTimeout(resolve, 40)); // answers after the claim
      throw new OutboxError('FENCED', 'this relay no longer holds the leader lock');
    },
  });
  const caught = await r.pipeline.deliver().then(
    () => undefined,
    (err: unknown) => err,
  );
  const { stage, error } = failureOf(caught);
  expect(stage).toBe('leadership');
  expect(isOutboxError(error, 'FENCED')).toBe(true);
  expect(r.events).toContain('claim done');
  expect(r.published).toBe(0);
});
