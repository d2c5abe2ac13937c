/**
 * How a relay instance's shards should change, given who is running: pure logic, no I/O (the
 * caller, relay/own-shards.ts, probes the locks and applies the plan).
 *
 * Every instance sees the same sorted member list, so they agree on the quotas: with S shards and N
 * members, the first S mod N members (by rank) take ceil(S/N), the others floor(S/N); the quotas add
 * up to S. Assignment is sticky: an instance keeps the shards it holds up to its quota, gives up only
 * its surplus (the highest-numbered), and takes free shards (held by nobody) up to its quota. A
 * newcomer therefore takes shards only as the others release their surplus between batches: nobody
 * pauses, and no shard changes hands more than once per membership change.
 */
export interface ShardView {
  shardCount: number;
  /** Every running instance's member key (this one's included), in any order. */
  members: readonly number[];
  /** This instance's member key. */
  self: number;
  /** Shards this instance holds. */
  owned: ReadonlySet<number>;
  /** Shards other instances hold. */
  taken: ReadonlySet<number>;
}

export interface ShardPlan {
  /** This instance's fair share. */
  quota: number;
  /** Shards to give up (surplus), between batches. */
  release: number[];
  /** Free shards to try to take, in order. */
  acquire: number[];
}

/** The fair share of the member of rank `rank` (0-based) among `members` sharing `shardCount` shards. */
export function shardQuota(shardCount: number, members: number, rank: number): number {
  if (members <= 0 || rank < 0 || rank >= members) return 0;
  return Math.floor(shardCount / members) + (rank < shardCount % members ? 1 : 0);
}

export function planShards(view: ShardView): ShardPlan {
  const members = [...new Set([...view.members, view.self])].sort((a, b) => a - b);
  const quota = shardQuota(view.shardCount, members.length, members.indexOf(view.self));
  const owned = [...view.owned].filter((s) => s >= 0 && s < view.shardCount).sort((a, b) => a - b);
  const invalid = [...view.owned].filter((s) => s < 0 || s >= view.shardCount);
  if (owned.length > quota) return { quota, release: [...invalid, ...owned.slice(quota)], acquire: [] };
  const free: number[] = [];
  for (let s = 0; s < view.shardCount && free.length < quota - owned.length; s++) {
    if (!view.owned.has(s) && !view.taken.has(s)) free.push(s);
  }
  return { quota, release: invalid, acquire: free };
}

/** Shard numbers as compact ranges for logs and `outbox status`: [0,1,2,5,7,8] → "0-2,5,7-8". */
export function formatShards(shards: Iterable<number>): string {
  const sorted = [...new Set(shards)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
