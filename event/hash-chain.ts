import { createHash } from 'node:crypto';
import { OutboxError } from '../core/errors';
import { canonicalJsonb, canonicalText, integerText, type ChainFields } from './canonical';
import type { EventEnvelope } from './envelope';

/**
 * The per-aggregate hash chain (docs/hash-chain.md):
 *
 *   hash = SHA-256(prev_hash ‖ canonicalEncoding(event))       prev_hash of version 1 = 32 zero bytes
 *
 * The insert trigger computes it in PostgreSQL; these functions recompute and verify it anywhere else.
 */

/** prev_hash of an aggregate's first event. */
export const ZERO_HASH: Buffer = Buffer.alloc(32);

function invalid(field: string, problem: string): never {
  throw new OutboxError('PAYLOAD_INVALID', `${field} ${problem}`, { details: { field } });
}

/** The chain fields of an envelope (its payload rendered as PostgreSQL renders the stored jsonb). */
export function chainFieldsOf(event: Omit<EventEnvelope, 'hash' | 'prevHash'>): ChainFields {
  return {
    eventId: event.eventId,
    aggregateType: event.aggregateType,
    aggregateId: event.aggregateId,
    aggregateVersion: event.aggregateVersion,
    eventType: event.eventType,
    schemaVersion: event.schemaVersion,
    occurredAt: event.occurredAt,
    actorId: event.actorId,
    traceId: event.traceId,
    correlationId: event.correlationId,
    causationId: event.causationId,
    traceparent: event.traceparent,
    payload: canonicalJsonb(event.payload),
  };
}

/** A hash given as bytes, or as hex (optionally `\x`-prefixed, as PostgreSQL prints bytea). */
export function toHashBuffer(value: Buffer | Uint8Array | string, field = 'hash'): Buffer {
  if (typeof value === 'string') {
    const hex = value.startsWith('\\x') ? value.slice(2) : value;
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) invalid(field, 'must be 32 bytes (64 hex digits)');
    return Buffer.from(hex, 'hex');
  }
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (b.length !== 32) invalid(field, `must be 32 bytes, got ${b.length}`);
  return b;
}

/** SHA-256(prevHash ‖ canonicalEncoding(fields)). */
export function computeHash(prevHash: Buffer | Uint8Array | string, fields: ChainFields): Buffer {
  return createHash('sha256').update(toHashBuffer(prevHash, 'prevHash')).update(canonicalText(fields), 'utf8').digest();
}

export interface LinkEvent extends ChainFields {
  /** The event's stored hash. */
  hash: Buffer | Uint8Array | string;
  /** The event's stored prev_hash, if the message carries it. */
  prevHash?: Buffer | Uint8Array | string | null;
}

export interface LinkResult {
  ok: boolean;
  /** The recomputed hash (the `previousHash` to pass for the aggregate's next event). */
  hash: Buffer;
  reason?: string;
}

/**
 * Verify one link of an aggregate's chain on arrival (e.g. in the projector, from the Kafka message's
 * fields). `previousHash` is the hash of the aggregate's previous event as the caller knows it (the
 * `hash` returned for that event). Pass null/undefined when it is not known: version 1 must then link
 * to the zero hash; a later version is checked only against the `prevHash` it carries (self-consistency:
 * the caller starts in the middle of a chain). Returns a value, never throws for a broken link; malformed
 * inputs (a hash that is not 32 bytes, a bad timestamp) throw OutboxError('PAYLOAD_INVALID').
 */
export function verifyEventLink(previousHash: Buffer | Uint8Array | string | null | undefined, event: LinkEvent): LinkResult {
  const version = BigInt(integerText('aggregateVersion', event.aggregateVersion));
  const carried = event.prevHash === undefined || event.prevHash === null ? undefined : toHashBuffer(event.prevHash, 'prevHash');
  const expectedPrev = previousHash !== undefined && previousHash !== null ? toHashBuffer(previousHash, 'previousHash') : version === 1n ? ZERO_HASH : undefined;
  const base = expectedPrev ?? carried;
  if (base === undefined) {
    throw new OutboxError('PAYLOAD_INVALID', `verifyEventLink needs previousHash or the event's prevHash for version ${version}`, { details: { field: 'prevHash' } });
  }
  const hash = computeHash(base, event);
  if (version < 1n) return { ok: false, hash, reason: `aggregate_version must be 1 or more, got ${version}` };
  if (expectedPrev !== undefined && carried !== undefined && !carried.equals(expectedPrev)) {
    return { ok: false, hash, reason: `prev_hash ${carried.toString('hex')} does not link to the previous hash ${expectedPrev.toString('hex')}` };
  }
  const stored = toHashBuffer(event.hash, 'hash');
  if (!stored.equals(hash)) {
    return { ok: false, hash, reason: `hash mismatch: stored ${stored.toString('hex')}, recomputed ${hash.toString('hex')}` };
  }
  return { ok: true, hash };
}
