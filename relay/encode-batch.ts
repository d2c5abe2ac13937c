import type { RelaySettings } from '../core/config';
import type { PendingEvent } from './claim-batch';
import type { EncodedEvent } from './publish-batch';
import { topicFor } from '../core/topics';

/** What the relay needs from the schema layer (schemas/encode-event.ts provides it). */
export interface EventEncoderPort {
  prepare(): Promise<void>;
  encode(event: {
    eventId: string;
    eventType: string;
    schemaVersion: number;
    aggregateType: string;
    aggregateId: string;
    aggregateVersion: number;
    occurredAt: string;
    actorId: string;
    traceId: string;
    correlationId: string | null;
    causationId: string | null;
    traceparent: string | null;
    hash: Buffer;
    prevHash: Buffer;
    payload: unknown;
  }): Promise<{ ok: true; value: Buffer; schemaId: number } | { ok: false; reason: string; kind?: string }>;
}

export interface Poison {
  event: PendingEvent;
  reason: string;
}

/**
 * Encode a claimed batch. An event that cannot be encoded is poison: it is returned for parking, and
 * every later event of its aggregate in this batch is held back (not published, not parked) so the
 * aggregate's order holds. Registry outages throw (the whole batch is retried later).
 */
export async function encodeBatch(
  encoder: EventEncoderPort,
  batch: PendingEvent[],
  settings: Pick<RelaySettings, 'topicMap' | 'topicSuffix' | 'maxMessageBytes'>,
): Promise<{ encoded: EncodedEvent[]; poison: Poison[]; heldBack: number }> {
  const encoded: EncodedEvent[] = [];
  const poison: Poison[] = [];
  const blocked = new Set<string>();
  let heldBack = 0;
  for (const event of batch) {
    const aggregate = `${event.aggregateType}\u0000${event.aggregateId}`;
    if (blocked.has(aggregate)) {
      heldBack += 1;
      continue;
    }
    const result = await encoder.encode(event);
    if (result.ok && result.value.length > settings.maxMessageBytes) {
      poison.push({
        event,
        reason: `encoded event is ${result.value.length} bytes, more than the broker accepts (OUTBOX_KAFKA_MAX_MESSAGE_BYTES=${settings.maxMessageBytes})`,
      });
      blocked.add(aggregate);
    } else if (result.ok) {
      encoded.push({ event, topic: topicFor(event.aggregateType, settings), value: result.value });
    } else {
      poison.push({ event, reason: result.reason });
      blocked.add(aggregate);
    }
  }
  return { encoded, poison, heldBack };
}
