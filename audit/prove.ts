import type pg from 'pg';
import { OutboxError } from '../core/errors';
import { ident, withTransaction } from '../core/pg';
import type { SignedCheckpoint } from './checkpoint';
import { historyAt } from './checkpoint';
import type { StoredCheckpoint } from './checkpoint-store';
import { auditPath, compareHeads, leafHash } from './merkle';

/**
 * An inclusion proof (docs/hash-chain.md, "Inclusion proofs"): everything needed to show, with the
 * public key alone, that one event is part of the history a signed checkpoint covers.
 *
 * - `event`: the event's canonical bytes E(v) (as the string whose UTF-8 encoding they are), its
 *   prev_hash and hash;
 * - `chain`: the canonical bytes and hash of every later version of the aggregate up to its head as of
 *   the checkpoint's covered id, in version order (empty when the event is that head);
 * - `merkle`: the head leaf's index among the checkpoint's leaves, the number of leaves, and the RFC 6962
 *   audit path from that leaf to the root (sibling hashes, nearest first);
 * - `checkpoint`: the signed checkpoint, as it was stored.
 *
 * Every field is checked by `checkInclusionProof`; none is informational only.
 */
export const PROOF_FORMAT = 'kafka-outbox inclusion proof v1';

export interface ProofEvent {
  aggregateType: string;
  aggregateId: string;
  /** Decimal. */
  version: string;
  eventId: string;
  /** E(v): this string's UTF-8 bytes are the canonical encoding that was hashed. */
  canonical: string;
  /** 64 lower-case hex digits. */
  prevHash: string;
  hash: string;
}

export interface ProofLink {
  version: string;
  canonical: string;
  hash: string;
}

export interface InclusionProof {
  format: typeof PROOF_FORMAT;
  event: ProofEvent;
  chain: ProofLink[];
  merkle: { leafIndex: number; treeSize: number; path: string[] };
  checkpoint: SignedCheckpoint;
}

/** The newest readable checkpoint of `schema` (highest covered id; the later timestamp on a tie). */
export function latestCheckpoint(stored: readonly StoredCheckpoint[], schema: string): SignedCheckpoint | undefined {
  let best: SignedCheckpoint | undefined;
  for (const s of stored) {
    if (!('checkpoint' in s) || s.checkpoint.schema !== schema) continue;
    const c = s.checkpoint;
    if (!best || BigInt(c.coveredId) > BigInt(best.coveredId) || (c.coveredId === best.coveredId && c.timestamp > best.timestamp)) best = c;
  }
  return best;
}

interface ChainRow {
  id: string;
  event_id: string;
  aggregate_version: string;
  canonical: Buffer;
  prev_hash: Buffer;
  hash: Buffer;
}

/**
 * Build the inclusion proof of one event (`version`, default: the aggregate's head as of the checkpoint)
 * against the newest of `checkpoints`, which must cover it. The history must still reproduce that
 * checkpoint's root: when it does not, there is nothing honest to prove and CHAIN_BROKEN is thrown.
 */
export async function buildInclusionProof(
  pool: pg.Pool,
  options: { schema: string; aggregateType: string; aggregateId: string; version?: bigint; checkpoints: readonly StoredCheckpoint[] },
): Promise<InclusionProof> {
  const s = ident(options.schema);
  const name = `${options.aggregateType}/${options.aggregateId}`;
  const checkpoint = latestCheckpoint(options.checkpoints, options.schema);
  if (!checkpoint) throw new OutboxError('NOT_FOUND', `no readable checkpoint of schema "${options.schema}": take one with "outbox audit checkpoint"`);
  const coveredId = BigInt(checkpoint.coveredId);

  const rows = await withTransaction(pool, async (client) => {
    await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    if (options.version !== undefined) {
      const at = await client.query<{ id: string }>(`SELECT id::text AS id FROM ${s}.outbox WHERE aggregate_type = $1 AND aggregate_id = $2 AND aggregate_version = $3::bigint`, [
        options.aggregateType,
        options.aggregateId,
        options.version.toString(),
      ]);
      const id = at.rows[0]?.id;
      if (id === undefined) throw new OutboxError('NOT_FOUND', `${name} has no version ${options.version} in schema "${options.schema}"`);
      if (BigInt(id) > coveredId) {
        throw new OutboxError(
          'NOT_FOUND',
          `${name} v${options.version} (outbox id ${id}) is newer than the latest checkpoint (covered id ${checkpoint.coveredId}): take a checkpoint first`,
        );
      }
    }
    const { rows } = await client.query<ChainRow>(
      `SELECT o.id::text AS id, o.event_id::text AS event_id, o.aggregate_version::text AS aggregate_version, o.prev_hash, o.hash,
              ${s}.outbox_canonical_encoding(o.event_id, o.aggregate_type, o.aggregate_id, o.aggregate_version, o.event_type, o.schema_version,
                  o.occurred_at, o.actor_id, o.trace_id, o.correlation_id, o.causation_id, o.traceparent, o.payload) AS canonical
         FROM ${s}.outbox o
        WHERE o.aggregate_type = $1 AND o.aggregate_id = $2 AND o.id <= $3::bigint AND o.aggregate_version >= $4::bigint
        ORDER BY o.aggregate_version`,
      [options.aggregateType, options.aggregateId, checkpoint.coveredId, (options.version ?? 1n).toString()],
    );
    return rows;
  });
  if (rows.length === 0) throw new OutboxError('NOT_FOUND', `${name} has no event covered by the latest checkpoint (covered id ${checkpoint.coveredId})`);
  const chainRows = options.version !== undefined ? rows : rows.slice(-1);
  const first = BigInt(chainRows[0]!.aggregate_version);
  chainRows.forEach((r, i) => {
    if (BigInt(r.aggregate_version) !== first + BigInt(i)) {
      throw new OutboxError('CHAIN_BROKEN', `${name}: version ${first + BigInt(i)} is missing below the checkpoint's covered id ${checkpoint.coveredId}`);
    }
  });

  const at = await historyAt(pool, { schema: options.schema, coveredId });
  if (at.root.toString('hex') !== checkpoint.root || at.heads.length !== checkpoint.aggregateCount) {
    throw new OutboxError(
      'CHAIN_BROKEN',
      `the history no longer reproduces the checkpoint at covered id ${checkpoint.coveredId} (taken ${checkpoint.timestamp}): run "outbox audit verify --checkpoints"`,
    );
  }
  const heads = [...at.heads].sort(compareHeads);
  const leafIndex = heads.findIndex((h) => h.aggregateType === options.aggregateType && h.aggregateId === options.aggregateId);
  const head = heads[leafIndex];
  const last = chainRows[chainRows.length - 1]!;
  if (!head || head.version !== BigInt(last.aggregate_version) || !head.hash.equals(last.hash)) {
    throw new OutboxError('INTERNAL', `${name}: the head as of covered id ${checkpoint.coveredId} is not the last event read`);
  }
  const leaves = heads.map(leafHash);
  const e = chainRows[0]!;
  return {
    format: PROOF_FORMAT,
    event: {
      aggregateType: options.aggregateType,
      aggregateId: options.aggregateId,
      version: e.aggregate_version,
      eventId: e.event_id,
      canonical: e.canonical.toString('utf8'),
      prevHash: e.prev_hash.toString('hex'),
      hash: e.hash.toString('hex'),
    },
    chain: chainRows.slice(1).map((r) => ({ version: r.aggregate_version, canonical: r.canonical.toString('utf8'), hash: r.hash.toString('hex') })),
    merkle: { leafIndex, treeSize: leaves.length, path: auditPath(leaves, leafIndex).map((h) => h.toString('hex')) },
    checkpoint: { ...checkpoint },
  };
}
