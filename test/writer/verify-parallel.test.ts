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

test('occurred_at is encoded as the server prints it, across the calendar: before 2000, leap days, years 1 to 9999, and a tampered time outside them', async () => {
  const times = [
    '2024-02-29 23:59:59.999999+00',
    '1999-12-31 23:59:59.000001+00',
    '2000-01-01 00:00:00+00',
    '1970-01-01 00:00:00.1+00',
    '2285-06-01 12:34:56.789012+00',
    '1500-03-01 00:00:00.000007+00',
    '0099-06-01 12:00:00.5+00',
    '0001-01-01 00:00:00+00',
    '9999-12-31 23:59:59.999999+00',
    '2026-12-02 07:00:00+05:30',
  ];
  // Only this test's aggregates (the previous test left broken ones).
  await tamper(`DELETE FROM outbox_delivery WHERE aggregate_type = 'acct'`, []);
  await tamper(`DELETE FROM outbox WHERE aggregate_type = 'acct'`, []);
  await tamper(`DELETE FROM outbox_aggregates WHERE aggregate_type = 'acct'`, []);
  for (const [i, t] of times.entries()) {
    await db.pool.query(
      `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, occurred_at)
       VALUES ('clock', $1, 'Ticked', 1, '{"t": 1}', 'user:1', 'trace', $2::timestamptz)`,
      [`c-${i}`, t],
    );
  }
  const { rows } = await db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM outbox WHERE aggregate_type = 'clock'`);
  expect(Number(rows[0]!.n)).toBe(times.length);
  for (const a of await answers()) expect(a).toEqual({ ok: true, checked: times.length });

  // The trigger admits only years 1..9999; a time outside them (set behind its back) is a changed event.
  await tamper(`UPDATE outbox SET occurred_at = '10000-01-01 00:00:00+00' WHERE aggregate_type = 'clock' AND aggregate_id = 'c-3'`, []);
  const moved = await answers();
  expect(moved[0]).toMatchObject({ ok: false, firstBroken: { aggregateType: 'clock', aggregateId: 'c-3', version: 1 } });
  expect(moved[0]!.firstBroken!.reason).toMatch(/^hash mismatch/);
  for (const a of moved) expect(a).toEqual(moved[0]);
});
