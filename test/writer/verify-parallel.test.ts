import type pg from 'pg';
import { appendEvents, verifyChain, withTransaction, type VerifyChainResult } from '../../writer';
import { useTestDatabase } from '../support/isolation';
import { makeEvent } from './helpers';

// verifyChain streams the rows by binary COPY and, with a pool and `parallelism`, verifies key ranges of
// aggregates at once: the answer (ok, checked, the first broken link) must not depend on the parallelism.
const db = useTestDatabase({ poolSize: 6 });

const IDS = ['a-01', 'a-02', 'a-03', 'b-é', 'b-ü', 'c-✓', 'c-10', 'c-11', 'd-1', 'd-2', 'e-1', 'z-9'];

async function onClient<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await db.pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

function stable(r: VerifyChainResult): Omit<VerifyChainResult, 'eventsPerSecond'> {
  const { eventsPerSecond: _, ...rest } = r;
  return rest;
}

async function answers(): Promise<Array<Omit<VerifyChainResult, 'eventsPerSecond'>>> {
  const out = [stable(await onClient((c) => verifyChain(c)))];
  for (const parallelism of [1, 2, 3, 5]) out.push(stable(await verifyChain(db.pool, { parallelism })));
  // A single client with parallelism reads the ranges one after another.
  out.push(stable(await onClient((c) => verifyChain(c, { parallelism: 4 }))));
  return out;
}

async function tamper(sql: string, params: unknown[]): Promise<void> {
  await onClient(async (c) => {
    await c.query('BEGIN');
    await c.query('SET LOCAL session_replication_role = replica');
    await c.query(sql, params);
    await c.query('COMMIT');
  });
}

test('the same answer at every parallelism: intact, then the first broken link in key order and the count before it', async () => {
  const big = 'ü'.repeat(60_000); // a row larger than the encoder's first buffer, with multi-byte text
  await withTransaction(db.pool, (c) =>
    appendEvents(
      c,
      IDS.flatMap((id, i) =>
        Array.from({ length: 3 + (i % 3) }, (_, v) =>
          makeEvent('acct', id, {
            payload: { v, id, ...(id === 'c-10' && v === 1 ? { big } : {}) },
            correlationId: v === 0 ? null : `corr-${id}`,
            causationId: v === 2 ? `cause-${id}` : null,
          }),
        ),
      ),
    ),
  );
  const total = IDS.reduce((n, _, i) => n + 3 + (i % 3), 0);

  const intact = await answers();
  for (const a of intact) expect(a).toEqual({ ok: true, checked: total });

  // A changed payload late in key order (d-2, version 2), then a missing version earlier (b-ü, version 2).
  await tamper(`UPDATE outbox SET payload = '{"v": 99}' WHERE aggregate_type = 'acct' AND aggregate_id = 'd-2' AND aggregate_version = 2`, []);
  const late = await answers();
  expect(late[0]).toMatchObject({ ok: false, firstBroken: { aggregateId: 'd-2', version: 2 } });
  expect(late[0]!.firstBroken!.reason).toMatch(/^hash mismatch/);
  for (const a of late) expect(a).toEqual(late[0]);

  await tamper(`DELETE FROM outbox_delivery WHERE aggregate_type = 'acct' AND aggregate_id = 'b-ü' AND aggregate_version = 2`, []);
  await tamper(`DELETE FROM outbox WHERE aggregate_type = 'acct' AND aggregate_id = 'b-ü' AND aggregate_version = 2`, []);
  const early = await answers();
  expect(early[0]).toMatchObject({ ok: false, firstBroken: { aggregateId: 'b-ü', version: 2, eventId: null } });
  expect(early[0]!.firstBroken!.reason).toMatch(/version 2 is missing/);
  for (const a of early) expect(a).toEqual(early[0]);

  // The head moved away from the last event of the last aggregate in key order.
  await tamper(`UPDATE outbox_aggregates SET last_hash = sha256('x') WHERE aggregate_type = 'acct' AND aggregate_id = 'z-9'`, []);
  const restored = await onClient((c) => verifyChain(c, { aggregate: { type: 'acct', id: 'z-9' } }));
  expect(restored.firstBroken).toMatchObject({ aggregateId: 'z-9', eventId: null });
  expect(restored.firstBroken!.reason).toMatch(/does not point at the last event/);
  expect(stable(await verifyChain(db.pool, { parallelism: 3, aggregate: { type: 'acct', id: 'z-9' } }))).toEqual(stable(restored));
});
