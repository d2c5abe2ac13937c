import { createHash } from 'node:crypto';
import { auditPath, compareHeads, leafBytes, leafHash, merkleRoot, merkleRootOfLeaves, rootFromAuditPath, type AggregateHead } from '../../audit/merkle';

const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();

/** RFC 6962's recursive definition, written out independently of the implementation. */
function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha(Buffer.from([1]), mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

const head = (t: string, id: string, v: number): AggregateHead => ({ aggregateType: t, aggregateId: id, version: BigInt(v), hash: sha(Buffer.from(`${t}/${id}/${v}`)) });

test('a leaf is the netstrings of type, id, decimal version and hex hash, hashed with a 0x00 prefix', () => {
  const h = head('user', 'é1', 12);
  expect(leafBytes(h).toString('utf8')).toBe(`4:user,3:é1,2:12,64:${h.hash.toString('hex')},`);
  expect(leafHash(h)).toEqual(sha(Buffer.from([0]), leafBytes(h)));
});

test('the root is RFC 6962 MTH for every tree size, and does not depend on the order heads are given in', () => {
  for (let n = 0; n <= 17; n++) {
    const leaves = Array.from({ length: n }, (_, i) => sha(Buffer.from(String(i))));
    expect(merkleRootOfLeaves(leaves).toString('hex')).toBe(mth(leaves).toString('hex'));
  }
  const heads = [head('user', 'b', 1), head('order', 'z', 3), head('user', 'a', 2), head('user', 'B', 1)];
  expect(merkleRoot(heads)).toEqual(merkleRoot([...heads].reverse()));
  // Byte order: 'B' (0x42) before 'a' (0x61) before 'b'; 'order' before 'user'.
  expect([...heads].sort(compareHeads).map((h) => `${h.aggregateType}/${h.aggregateId}`)).toEqual(['order/z', 'user/B', 'user/a', 'user/b']);
});

test('changing one head changes the root', () => {
  const heads = [head('user', 'a', 1), head('user', 'b', 2), head('user', 'c', 3)];
  const changed = [...heads.slice(0, 2), { ...heads[2]!, version: 2n }];
  expect(merkleRoot(changed)).not.toEqual(merkleRoot(heads));
});

test('the audit path of every leaf, for every tree size, leads back to the root (RFC 6962 PATH, RFC 9162 verification); a wrong index or path does not', () => {
  for (let n = 1; n <= 19; n++) {
    const leaves = Array.from({ length: n }, (_, i) => sha(Buffer.from(`leaf ${i}`)));
    const root = mth(leaves);
    for (let m = 0; m < n; m++) {
      const path = auditPath(leaves, m);
      expect(rootFromAuditPath({ leafHash: leaves[m]!, index: m, treeSize: n, path })).toEqual(root);
      if (n > 1) {
        const other = (m + 1) % n;
        expect(rootFromAuditPath({ leafHash: leaves[m]!, index: other, treeSize: n, path })?.equals(root) ?? false).toBe(false);
        expect(rootFromAuditPath({ leafHash: leaves[m]!, index: m, treeSize: n, path: path.slice(1) })?.equals(root) ?? false).toBe(false);
        expect(rootFromAuditPath({ leafHash: leaves[m]!, index: m, treeSize: n, path: [...path, root] })).toBeNull();
      }
    }
  }
});
