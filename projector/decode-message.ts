import type { KafkaMessage } from 'kafkajs';
import type { DecodedEvent } from '../event/envelope';
import type { ProjectedEvent, SourceMessage } from './types';

/** What schemas/decode-event.ts `createEventDecoder(...).decode` returns (throws REGISTRY_UNAVAILABLE when the registry is down). */
export type DecodeOutcome = { ok: true; schemaId: number; event: DecodedEvent } | { ok: false; kind: 'bad_magic' | 'unknown_schema_id' | 'undecodable'; reason: string };

export interface EventDecoderLike {
  decode(buffer: Buffer): Promise<DecodeOutcome>;
}

export type DeadLetterKind = 'bad_magic' | 'unknown_schema_id' | 'undecodable' | 'handler_rejected';

/** A message of a batch after decoding: an event to project, or a message for the dead-letter topic. */
export type DecodedMessage = { ok: true; offset: bigint; item: ProjectedEvent } | { ok: false; offset: bigint; source: SourceMessage; kind: DeadLetterKind; reason: string };

export function toSource(topic: string, partition: number, m: KafkaMessage): SourceMessage {
  return { topic, partition, offset: m.offset, key: m.key ?? null, value: m.value ?? null, headers: m.headers ?? {}, timestamp: m.timestamp };
}

/** Decode every message of a batch. Registry outages propagate (the caller retries the batch). */
export async function decodeMessages(decoder: EventDecoderLike, topic: string, partition: number, messages: KafkaMessage[]): Promise<DecodedMessage[]> {
  const out: DecodedMessage[] = [];
  for (const m of messages) {
    const source = toSource(topic, partition, m);
    const offset = BigInt(m.offset);
    if (!m.value || m.value.length === 0) {
      out.push({ ok: false, offset, source, kind: 'undecodable', reason: 'message has no value (tombstone or empty)' });
      continue;
    }
    const r = await decoder.decode(m.value);
    if (r.ok) out.push({ ok: true, offset, item: { event: r.event, schemaId: r.schemaId, source } });
    else out.push({ ok: false, offset, source, kind: r.kind, reason: r.reason });
  }
  return out;
}
