import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentLogger } from '../../core/logger';
import { canonicalJsonb, computeHash, ZERO_HASH } from '../../event';
import { createAuditLogProjection, loadAggregate, rebuildProjection, startProjector, type RunningProjector } from '../../projector';
import type { AggregateReducer } from '../../projector/types';
import { loadCatalog } from '../../schemas/catalog';
import { createEventDecoder } from '../../schemas/decode-event';
import { createUpcasterRegistry } from '../../schemas/upcasters';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { projectorFixture, type TestEvent, waitFor } from './support';

// Snapshots belong to the generation of the audit_log they were folded from. A rebuild with a fixed
// upcaster builds new snapshots in the new generation; after the swap loadAggregate folds from those,
// never from a snapshot of the old generation built with the buggy upcaster.
const db = useTestDatabase();
const logger = silentLogger();
const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-snap-'));
let projector: RunningProjector | undefined;
afterAll(async () => {
  await projector?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Deposits written as v1 (`amount` in euros); v2 carries `amount_cents`. */
function writeSchemas(): void {
  mkdirSync(path.join(dir, 'account'));
  writeFileSync(path.join(dir, 'account', 'Deposited.v1.avsc'), JSON.stringify({ type: 'record', fields: [{ name: 'amount', type: 'long' }] }));
  writeFileSync(path.join(dir, 'account', 'Deposited.v2.avsc'), JSON.stringify({ type: 'record', fields: [{ name: 'amount_cents', type: 'long' }] }));
}

function deposits(accountId: string, amounts: number[]): TestEvent[] {
  let prev = ZERO_HASH;
  return amounts.map((amount, i) => {
    const e = {
      eventId: randomUUID(),
      eventType: 'Deposited',
      schemaVersion: 1,
      aggregateType: 'account',
      aggregateId: accountId,
      aggregateVersion: i + 1,
      occurredAt: new Date(Date.UTC(2025, 0, 1, 0, 0, i)),
      actorId: 'teller',
      traceId: 'trace',
      correlationId: null,
      causationId: null,
      traceparent: null,
      prevHash: prev,
      payload: { amount },
    };
    const hash = computeHash(prev, { ...e, payload: canonicalJsonb(e.payload) });
    prev = hash;
    return { ...e, hash };
  });
}

const balance: AggregateReducer<{ cents: number }> = {
  aggregateType: 'account',
  version: 1,
  schemaVersion: 1,
  initial: () => ({ cents: 0 }),
  apply: (s, e) => ({ cents: s.cents + Number((e.payload as { amount_cents: number }).amount_cents) }),
};

test("after a rebuild with a fixed upcaster, loadAggregate folds from the new generation's snapshots, not the stale ones", async () => {
  writeSchemas();
  const catalog = loadCatalog(dir, { namespace: uniqueName('snap') });
  const { config, topic, produce } = await projectorFixture(db.url, logger, { catalog, topicPrefix: 'account_events', env: { OUTBOX_SNAPSHOT_EVERY: '2' } });
  await produce(deposits('acc-1', [1, 2, 3, 4, 5]));

  const buggy = createUpcasterRegistry().register('Deposited', 1, (p) => ({ amount_cents: p.amount })); // forgot * 100
  const fixed = createUpcasterRegistry().register('Deposited', 1, (p) => ({ amount_cents: Number(p.amount) * 100 }));
  const auditLog = () => createAuditLogProjection({ topics: [topic], reducers: [balance as AggregateReducer], catalog });
  const groupIdPrefix = uniqueName('g');

  projector = await startProjector({
    config,
    logger,
    pool: db.pool,
    catalog,
    decoder: createEventDecoder({ registry: config.registry, catalog, upcasters: buggy, logger }),
    projections: [auditLog()],
    groupIdPrefix,
    sessionTimeoutMs: 6000,
  });
  await waitFor('applied', async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]!.n === 5);
  const before = await loadAggregate<{ cents: number }>(db.pool, 'account', 'acc-1', { reducer: balance as AggregateReducer });
  expect(before).toMatchObject({ version: 5, snapshotVersion: 4, state: { cents: 15 } });

  const result = await rebuildProjection({
    config,
    logger,
    pool: db.pool,
    catalog,
    projection: auditLog(),
    decoder: createEventDecoder({ registry: config.registry, catalog, upcasters: fixed, logger }),
    groupIdPrefix,
    sessionTimeoutMs: 6000,
  });
  expect(result.swapped).toBe(true);
  await projector.stop();
  projector = undefined;

  const replay = await loadAggregate<{ cents: number }>(db.pool, 'account', 'acc-1', { reducer: balance as AggregateReducer, useSnapshots: false });
  expect(replay.state).toEqual({ cents: 1500 });
  const after = await loadAggregate<{ cents: number }>(db.pool, 'account', 'acc-1', { reducer: balance as AggregateReducer });
  expect(after).toMatchObject({ version: 5, snapshotVersion: 4, state: { cents: 1500 } });
}, 180_000);
