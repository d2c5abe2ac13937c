import type { RelaySettings } from '../core/config';
import type { EventEnvelope } from '../event/envelope';
import type { PendingEvent } from './claim-batch';
import { encodedRecordBytes, type EncodedEvent } from './publish-batch';
import { topicFor } from '../core/topics';

/** What the relay needs from the schema layer (schemas/encode-event.ts provides it). */
export interface EventEncoderPort {
  prepare(): Promise<void>;
  encode(event: EventEnvelope): Promise<{ ok: true; value: Buffer; schemaId: number } | { ok: false; reason: string; kind?: string }>;
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
  settings: Pick<RelaySettings, 'topicMap' | 'topicSuffix' | 'topicTemplate' | 'maxMessageBytes' | 'cloudEvents'>,
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
    // The whole record counts against the broker's limit: key, value, headers and the batch header.
    const bytes = result.ok ? encodedRecordBytes(event, result.value, settings) : 0;
    if (result.ok && bytes > settings.maxMessageBytes) {
      poison.push({
        event,
        reason: `the record is ${bytes} bytes, more than the broker accepts (OUTBOX_KAFKA_MAX_MESSAGE_BYTES=${settings.maxMessageBytes}): key, headers, batch header and a value of ${result.value.length} bytes`,
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
