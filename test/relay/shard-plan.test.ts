import { formatShards, planShards, shardQuota, type ShardView } from '../../relay/shard-plan';

// The shard assignment of sharded relays (pure logic): fair shares that add up to the shard count,
// sticky ownership, and convergence from any start to every shard owned once, each instance at its share.

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

test('quotas are ceil or floor of S/N and add up to S', () => {
  for (const s of [1, 7, 32, 33, 100]) {
    for (let n = 1; n <= 40; n++) {
      const quotas = range(n).map((r) => shardQuota(s, n, r));
      expect(quotas.reduce((a, b) => a + b, 0)).toBe(s);
      for (const q of quotas) expect([Math.floor(s / n), Math.ceil(s / n)]).toContain(q);
    }
  }
  expect(shardQuota(32, 0, 0)).toBe(0);
  expect(shardQuota(32, 3, 3)).toBe(0); // not a member
});

test('a lone instance takes every free shard; one that holds its share keeps it', () => {
  expect(planShards({ shardCount: 4, members: [10], self: 10, owned: new Set(), taken: new Set() })).toEqual({ quota: 4, release: [], acquire: [0, 1, 2, 3] });
  expect(planShards({ shardCount: 4, members: [10, 20], self: 20, owned: new Set([1, 3]), taken: new Set([0, 2]) })).toEqual({ quota: 2, release: [], acquire: [] });
});

test('above its share an instance gives up its highest shards; below it, it takes free ones only', () => {
  // A newcomer (30) joined: 10 holds all 6, its share is now 2 (members 10, 20, 30).
  expect(planShards({ shardCount: 6, members: [10, 20, 30], self: 10, owned: new Set(range(6)), taken: new Set() })).toEqual({ quota: 2, release: [2, 3, 4, 5], acquire: [] });
  // The newcomer takes nothing held by others, only what is free.
  expect(planShards({ shardCount: 6, members: [10, 20, 30], self: 30, owned: new Set(), taken: new Set([0, 1, 4, 5]) })).toEqual({ quota: 2, release: [], acquire: [2, 3] });
  // Shards beyond the shard count (a stale view) are given up.
  expect(planShards({ shardCount: 2, members: [1], self: 1, owned: new Set([0, 5]), taken: new Set() })).toEqual({ quota: 2, release: [5], acquire: [1] });
});

test('more instances than shards: the extra ones own nothing', () => {
  const plans = [1, 2, 3].map((self) => planShards({ shardCount: 2, members: [1, 2, 3], self, owned: new Set(), taken: new Set() }));
  expect(plans.map((p) => p.quota)).toEqual([1, 1, 0]);
  expect(plans[2]!.acquire).toEqual([]);
});

/** Rounds of every member planning against the same lock table, locks granted first come first served. */
function converge(shardCount: number, members: number[], start: Map<number, Set<number>>): { rounds: number; owners: Map<number, Set<number>> } {
  const owners = new Map(members.map((m) => [m, new Set(start.get(m) ?? [])]));
  for (let round = 1; round <= 10; round++) {
    let changed = false;
    for (const self of members) {
      const owned = owners.get(self)!;
      const taken = new Set([...owners].filter(([m]) => m !== self).flatMap(([, s]) => [...s]));
      const view: ShardView = { shardCount, members, self, owned, taken };
      const plan = planShards(view);
      for (const s of plan.release) owned.delete(s);
      for (const s of plan.acquire) if (![...owners.values()].some((o) => o.has(s))) owned.add(s);
      changed ||= plan.release.length > 0 || plan.acquire.length > 0;
    }
    if (!changed) return { rounds: round, owners };
  }
  return { rounds: Infinity, owners };
}

test('from any start, every shard ends up owned by exactly one instance, each at its share, within a few rounds', () => {
  const cases: Array<[number, number[], Map<number, Set<number>>]> = [
    [32, [1, 2, 3, 4], new Map()],
    [32, [1, 2, 3, 4], new Map([[1, new Set(range(32))]])], // three newcomers
    [
      32,
      [2, 3, 4],
      new Map([
        [2, new Set(range(8))],
        [3, new Set(range(16).slice(8))],
        [4, new Set(range(24).slice(16))],
      ]),
    ], // 1 died, its 8 free
    [7, [5, 9, 11], new Map([[9, new Set([0, 1, 2, 3, 4, 5, 6])]])],
    [32, range(40), new Map()],
  ];
  for (const [shardCount, members, start] of cases) {
    const { rounds, owners } = converge(shardCount, members, start);
    expect(rounds).toBeLessThanOrEqual(4);
    const all = [...owners.values()].flatMap((s) => [...s]).sort((a, b) => a - b);
    expect(all).toEqual(range(shardCount));
    const sorted = [...members].sort((a, b) => a - b);
    for (const [m, s] of owners) expect(s.size).toBe(shardQuota(shardCount, members.length, sorted.indexOf(m)));
  }
});

test('shards print as ranges', () => {
  expect(formatShards([0, 1, 2, 5, 7, 8])).toBe('0-2,5,7-8');
  expect(formatShards([])).toBe('');
  expect(formatShards([3])).toBe('3');
});
