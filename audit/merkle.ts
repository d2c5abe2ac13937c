import { createHash } from 'node:crypto';

/**
 * The Merkle tree of a checkpoint (docs/audit.md): one leaf per aggregate head, in a deterministic
 * order, hashed as in RFC 6962 (Certificate Transparency) so that a proof format can be added later:
 *
 *   leaf bytes = netstring(aggregate_type) ‖ netstring(aggregate_id) ‖ netstring(version, decimal)
 *                ‖ netstring(hash, 64 lower-case hex digits)        netstring(v) = `<utf8 length>:<utf8 bytes>,`
 *   leaf hash  = SHA-256(0x00 ‖ leaf bytes)
 *   node hash  = SHA-256(0x01 ‖ left ‖ right)
 *   root(n leaves): n = 0 → SHA-256(""); n = 1 → the leaf hash; else k = largest power of two < n,
 *                   SHA-256(0x01 ‖ root(first k) ‖ root(the rest))
 *   order: by aggregate_type, then aggregate_id, comparing their UTF-8 bytes (PostgreSQL COLLATE "C").
 */

/** One aggregate's head as of a checkpoint's covered outbox id. */
export interface AggregateHead {
  aggregateType: string;
  aggregateId: string;
  version: bigint;
  /** The head event's hash (32 bytes). */
  hash: Buffer;
}

function netstring(v: string): Buffer {
  const b = Buffer.from(v, 'utf8');
  return Buffer.concat([Buffer.from(`${b.length}:`, 'utf8'), b, Buffer.from(',', 'utf8')]);
}

/** The canonical bytes of one leaf. */
export function leafBytes(h: AggregateHead): Buffer {
  return Buffer.concat([netstring(h.aggregateType), netstring(h.aggregateId), netstring(h.version.toString()), netstring(h.hash.toString('hex'))]);
}

export function leafHash(h: AggregateHead): Buffer {
  return createHash('sha256')
    .update(Buffer.from([0]))
    .update(leafBytes(h))
    .digest();
}

export function nodeHash(left: Buffer, right: Buffer): Buffer {
  return createHash('sha256')
    .update(Buffer.from([1]))
    .update(left)
    .update(right)
    .digest();
}

/** The documented order of leaves: aggregate_type, then aggregate_id, by UTF-8 bytes. */
export function compareHeads(a: Pick<AggregateHead, 'aggregateType' | 'aggregateId'>, b: Pick<AggregateHead, 'aggregateType' | 'aggregateId'>): number {
  return (
    Buffer.compare(Buffer.from(a.aggregateType, 'utf8'), Buffer.from(b.aggregateType, 'utf8')) ||
    Buffer.compare(Buffer.from(a.aggregateId, 'utf8'), Buffer.from(b.aggregateId, 'utf8'))
  );
}

/** The Merkle root of leaf hashes already in leaf order (RFC 6962 MTH). */
export function merkleRootOfLeaves(leaves: readonly Buffer[]): Buffer {
  if (leaves.length === 0) return createHash('sha256').digest();
  // Bottom-up with the RFC 6962 split: pair neighbours, carry an odd last node up unchanged. This is the
  // same tree as the recursive definition (the left subtree is always the largest power of two).
  let level: Buffer[] = [...leaves];
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return level[0]!;
}

/** The Merkle root over aggregate heads (sorted here into the documented order). */
export function merkleRoot(heads: readonly AggregateHead[]): Buffer {
  const sorted = [...heads].sort(compareHeads);
  return merkleRootOfLeaves(sorted.map(leafHash));
}

/** The largest power of two strictly below n (n ≥ 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The audit path of leaf `index` (RFC 6962 §2.1.1 PATH(m, D[n])): the sibling subtree roots from the
 * leaf's level up to the root, nearest first.
 */
export function auditPath(leaves: readonly Buffer[], index: number): Buffer[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= leaves.length) throw new RangeError(`leaf index ${index} is outside a tree of ${leaves.length} leaves`);
  const path: Buffer[] = [];
  let lo = 0;
  let hi = leaves.length;
  let m = index;
  const siblings: Buffer[] = [];
  // Walk down from the root, remembering the sibling of each subtree entered; the path lists them bottom-up.
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    if (m < k) {
      siblings.push(merkleRootOfLeaves(leaves.slice(lo + k, hi)));
      hi = lo + k;
    } else {
      siblings.push(merkleRootOfLeaves(leaves.slice(lo, lo + k)));
      lo += k;
      m -= k;
    }
  }
  for (let i = siblings.length - 1; i >= 0; i--) path.push(siblings[i]!);
  return path;
}

/**
 * The root that an audit path leads to from a leaf hash (RFC 9162 §2.1.3.2), or null when the path does
 * not fit a tree of `treeSize` leaves at `index` (too short or too long).
 */
export function rootFromAuditPath(options: { leafHash: Buffer; index: number; treeSize: number; path: readonly Buffer[] }): Buffer | null {
  const { index, treeSize, path } = options;
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(treeSize) || index < 0 || index >= treeSize) return null;
  let fn = index;
  let sn = treeSize - 1;
  let r = options.leafHash;
  for (const p of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}
