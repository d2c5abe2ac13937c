import { silentLogger } from '../../core/logger';
import { ShardOwnership } from '../../relay/own-shards';
import { readShardOwners } from '../../relay';
import { useTestDatabase } from '../support/isolation';

// Shard ownership of sharded relays, without a relay loop: rebalancing runs on its own timer, so an
// instance whose publishing loop is busy (a long batch, an error back-off: here, no verify at all)
// still takes the shards a dead instance freed, and reports how many it owns.
const db = useTestDatabase({ poolSize: 4 });
const owners: ShardOwnership[] = [];

afterAll(async () => {
  for (const o of owners) await o.release();
});

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a member whose loop never checks its locks still takes the shards a departed member freed', async () => {
  const owned = new Map<string, number>();
  const woken = new Map<string, number>();
  const make = (id: string): ShardOwnership => {
    const o = new ShardOwnership({
      databaseUrl: db.url,
      schema: 'outbox',
      instanceId: id,
      logger: silentLogger(),
      rebalanceIntervalMs: 100,
      onNotify: () => woken.set(id, (woken.get(id) ?? 0) + 1),
      onOwned: (n) => owned.set(id, n),
    });
    owners.push(o);
    return o;
  };
  const a = make('a');
  await a.tryAcquire();
  const shardCount = (await readShardOwners(db.pool, 'outbox')).shardCount!;
  // Alone, a takes every shard without any verify (the timer), and wakes its loop to claim them.
  await waitFor('a owning every shard', () => a.shards.length === shardCount && owned.get('a') === shardCount);
  expect(woken.get('a')).toBeGreaterThan(0);

  // b joins: a hands its surplus over through two lock checks (the first leaves it out of the claims,
  // the second unlocks it, once the batch that might still hold its events has been marked).
  const wakes = woken.get('a')!;
  const b = make('b');
  await b.tryAcquire();
  await waitFor('a choosing its surplus (it wakes its loop for the check)', () => woken.get('a')! > wakes);
  expect(a.shards).toHaveLength(shardCount); // nothing left out before a verify
  await a.verify();
  expect(a.shards).toHaveLength(shardCount / 2); // left out of the claims, still locked
  expect((await readShardOwners(db.pool, 'outbox')).owners.find((o) => o.instance === 'a')!.shards).toHaveLength(shardCount);
  await a.verify();
  await waitFor('b taking the surplus a unlocked', async () => {
    const r = await readShardOwners(db.pool, 'outbox');
    return r.unowned.length === 0 && r.owners.find((o) => o.instance === 'b')?.shards.length === shardCount / 2;
  });
  await a.verify(); // a still holds what it claims from
  await waitFor('the shard counts reported', () => owned.get('a') === shardCount / 2 && owned.get('b') === shardCount / 2);

  // a leaves (its session ends): b, never verifying, takes every shard.
  await a.release();
  await waitFor('b owning every shard', async () => {
    const r = await readShardOwners(db.pool, 'outbox');
    return r.unowned.length === 0 && r.owners.length === 1 && r.owners[0]!.instance === 'b';
  });
  await waitFor('b claiming from every shard', () => b.shards.length === shardCount && owned.get('b') === shardCount);
  expect(owned.get('a')).toBe(0);
}, 120_000);
