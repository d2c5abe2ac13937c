import pg from 'pg';
import { isOutboxError } from '../../core/errors';
import { appendEvents, verifyChain, withTransaction, type AppendResult } from '../../writer';
import { useTestDatabase } from '../support/isolation';
import { makeEvent } from './helpers';

// The TypeScript append API against the real PostgreSQL: per-aggregate gapless versions under
// concurrency, optimistic concurrency as a returned conflict, rollbacks that consume nothing,
// writers of different aggregates that do not block each other.
const db = useTestDatabase({ poolSize: 12 });

async function versions(aggregateType: string): Promise<Map<string, number[]>> {
  const { rows } = await db.pool.query<{ aggregate_id: string; versions: string[] }>(
    `SELECT aggregate_id, array_agg(aggregate_version::text ORDER BY id) AS versions FROM outbox WHERE aggregate_type = $1 GROUP BY aggregate_id`,
    [aggregateType],
  );
  return new Map(rows.map((r) => [r.aggregate_id, r.versions.map(Number)]));
}

test('8 concurrent writers x 1,000 events over 50 aggregates: versions exactly 1..n per aggregate, every chain verifies', async () => {
  const WRITERS = 8;
  const PER_WRITER = 1000;
  const AGGREGATES = 50;
  const perAggregate = new Map<string, number>();
  const writer = async (w: number): Promise<void> => {
    let written = 0;
    let tx = 0;
    while (written < PER_WRITER) {
      // Mixed transaction sizes (1..20 events), each over random aggregates, so writers contend on heads.
      const size = Math.min(PER_WRITER - written, tx % 3 === 0 ? 1 : 1 + ((w * 7 + tx * 13) % 20));
      const events = Array.from({ length: size }, (_, k) => {
        const agg = `a${(w * 31 + tx * 17 + k * 7) % AGGREGATES}`;
        return makeEvent('conc', agg, { payload: { writer: w, tx, k } });
      });
      const result = await withTransaction(db.pool, (client) => appendEvents(client, events));
      expect(result.status).toBe('appended');
      for (const e of events) perAggregate.set(e.aggregateId, (perAggregate.get(e.aggregateId) ?? 0) + 1);
      written += size;
      tx++;
    }
  };
  await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));

  const byAggregate = await versions('conc');
  expect(byAggregate.size).toBe(AGGREGATES);
  let total = 0;
  for (const [agg, vs] of byAggregate) {
    // In id order the versions are exactly 1..n: no gaps, no duplicates, id order = version order.
    expect(vs).toEqual(Array.from({ length: vs.length }, (_, i) => i + 1));
    expect(vs.length).toBe(perAggregate.get(agg));
    total += vs.length;
  }
  expect(total).toBe(WRITERS * PER_WRITER);

  const heads = await db.pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM outbox_aggregates a
      WHERE a.aggregate_type = 'conc' AND a.version = (SELECT max(aggregate_version) FROM outbox o WHERE o.aggregate_type = a.aggregate_type AND o.aggregate_id = a.aggregate_id)`,
  );
  expect(Number(heads.rows[0]?.n)).toBe(AGGREGATES);
  const delivery = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM outbox_delivery WHERE aggregate_type = 'conc'`);
  expect(Number(delivery.rows[0]?.n)).toBe(WRITERS * PER_WRITER);

  const client = await db.pool.connect();
  try {
    const result = await verifyChain(client);
    expect(result).toMatchObject({ ok: true, checked: WRITERS * PER_WRITER });
    expect(result.firstBroken).toBeUndefined();
    expect(result.eventsPerSecond).toBeGreaterThan(0);
  } finally {
    client.release();
  }
});

test('concurrent appends with the same expected version: exactly one wins, the others get a conflict with the current version', async () => {
  const setup = await withTransaction(db.pool, (c) => appendEvents(c, [makeEvent('order', 'o-1'), makeEvent('order', 'o-1'), makeEvent('order', 'o-1')]));
  expect(setup.status === 'appended' && setup.events.map((e) => e.aggregateVersion)).toEqual([1, 2, 3]);

  const CONTENDERS = 6;
  const results = await Promise.all(
    Array.from({ length: CONTENDERS }, (_, i) =>
      withTransaction(db.pool, async (client) => {
        // Other work of the caller's transaction, before and after the append.
        await client.query('CREATE TEMP TABLE IF NOT EXISTS side_effect (n int) ON COMMIT DROP');
        const result = await appendEvents(client, [makeEvent('order', 'o-1', { payload: { contender: i } }), makeEvent('order', 'o-1')], { expectedVersion: 3 });
        // The transaction is still usable after a conflict.
        const { rows } = await client.query<{ ok: number }>('SELECT 1 AS ok');
        expect(rows[0]?.ok).toBe(1);
        return result;
      }),
    ),
  );
  const winners = results.filter((r): r is Extract<AppendResult, { status: 'appended' }> => r.status === 'appended');
  const conflicts = results.filter((r): r is Extract<AppendResult, { status: 'conflict' }> => r.status === 'conflict');
  expect(winners).toHaveLength(1);
  expect(winners[0]?.events.map((e) => e.aggregateVersion)).toEqual([4, 5]);
  expect(conflicts).toHaveLength(CONTENDERS - 1);
  for (const c of conflicts) {
    expect(c).toEqual({ status: 'conflict', aggregateType: 'order', aggregateId: 'o-1', expectedVersion: 3, currentVersion: 5 });
  }
  expect((await versions('order')).get('o-1')).toEqual([1, 2, 3, 4, 5]);

  // expectedVersion 0 = "must not exist yet"; a conflict leaves the caller's other writes in place.
  await db.pool.query('CREATE TABLE IF NOT EXISTS caller_state (id text PRIMARY KEY, v int)');
  const again = await withTransaction(db.pool, async (client) => {
    await client.query(`INSERT INTO caller_state VALUES ('x', 1)`);
    const fresh = await appendEvents(client, [makeEvent('order', 'o-new')], { expectedVersion: 0 });
    const stale = await appendEvents(client, [makeEvent('order', 'o-1')], { expectedVersion: 0 });
    await client.query(`UPDATE caller_state SET v = 2 WHERE id = 'x'`);
    return { fresh, stale };
  });
  expect(again.fresh).toMatchObject({ status: 'appended', events: [{ aggregateVersion: 1 }] });
  expect(again.stale).toEqual({ status: 'conflict', aggregateType: 'order', aggregateId: 'o-1', expectedVersion: 0, currentVersion: 5 });
  const state = await db.pool.query(`SELECT v FROM caller_state WHERE id = 'x'`);
  expect(state.rows).toEqual([{ v: 2 }]);

  // Several aggregates: the conflicting one is named, and nothing of the call is written.
  const multi = await withTransaction(db.pool, (c) => appendEvents(c, [makeEvent('order', 'o-new'), makeEvent('order', 'o-1')], { expectedVersion: 1 }));
  expect(multi).toEqual({ status: 'conflict', aggregateType: 'order', aggregateId: 'o-1', expectedVersion: 1, currentVersion: 5 });
  expect((await versions('order')).get('o-new')).toEqual([1]);
});

test('a rolled-back transaction leaves no row and consumes no version', async () => {
  const first = await withTransaction(db.pool, (c) => appendEvents(c, [makeEvent('acct', 'r-1'), makeEvent('acct', 'r-1')]));
  expect(first.status).toBe('appended');
  const before = await db.pool.query<{ n: string; last: string }>(`SELECT count(*) AS n, max(id)::text AS last FROM outbox`);

  const boom = new Error('caller failed after appending');
  let rolledBackEventIds: string[] = [];
  await expect(
    withTransaction(db.pool, async (c) => {
      const r = await appendEvents(c, [makeEvent('acct', 'r-1'), makeEvent('acct', 'r-2')]);
      expect(r.status === 'appended' && r.events.map((e) => e.aggregateVersion)).toEqual([3, 1]);
      if (r.status === 'appended') rolledBackEventIds = r.events.map((e) => e.eventId);
      throw boom;
    }),
  ).rejects.toBe(boom);

  const gone = await db.pool.query(`SELECT 1 FROM outbox WHERE event_id = ANY($1::uuid[])`, [rolledBackEventIds]);
  expect(gone.rowCount).toBe(0);
  const after = await db.pool.query<{ n: string }>(`SELECT count(*) AS n FROM outbox`);
  expect(after.rows[0]?.n).toBe(before.rows[0]?.n);
  const heads = await db.pool.query(`SELECT aggregate_id, version::int AS version FROM outbox_aggregates WHERE aggregate_type = 'acct' ORDER BY 1`);
  expect(heads.rows).toEqual([{ aggregate_id: 'r-1', version: 2 }]); // r-2 was never created
  const delivery = await db.pool.query(`SELECT 1 FROM outbox_delivery WHERE aggregate_type = 'acct' AND (aggregate_id = 'r-2' OR aggregate_version > 2)`);
  expect(delivery.rowCount).toBe(0);

  // The next append gets the versions the rolled-back one would have had.
  const next = await withTransaction(db.pool, (c) => appendEvents(c, [makeEvent('acct', 'r-1'), makeEvent('acct', 'r-2')]));
  expect(next.status === 'appended' && next.events.map((e) => e.aggregateVersion)).toEqual([3, 1]);
  const client = await db.pool.connect();
  try {
    expect(await verifyChain(client, { aggregate: { type: 'acct', id: 'r-1' } })).toMatchObject({ ok: true, checked: 3 });
  } finally {
    client.release();
  }
});

test('writers of different aggregates do not block each other; writers of one aggregate serialize', async () => {
  const holder = await db.pool.connect();
  const other = await db.pool.connect();
  try {
    await holder.query('BEGIN');
    await appendEvents(holder, [makeEvent('lock', 'held')]);
    await other.query('BEGIN');
    await other.query(`SET LOCAL lock_timeout = '500ms'`);
    const free = await appendEvents(other, [makeEvent('lock', 'free')]);
    expect(free.status).toBe('appended');
    await other.query('COMMIT');

    await other.query('BEGIN');
    await other.query(`SET LOCAL lock_timeout = '300ms'`);
    const blocked = appendEvents(other, [makeEvent('lock', 'held')]);
    await expect(blocked).rejects.toMatchObject({ code: 'DB_BUSY', retriable: true, message: expect.stringMatching(/lock timeout/) });
    await other.query('ROLLBACK');

    // Without a timeout the second writer waits for the first to commit, then follows it.
    await other.query('BEGIN');
    const waiting = appendEvents(other, [makeEvent('lock', 'held')]);
    await new Promise((r) => setTimeout(r, 200));
    await holder.query('COMMIT');
    const followed = await waiting;
    await other.query('COMMIT');
    expect(followed.status === 'appended' && followed.events[0]?.aggregateVersion).toBe(2);
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    await other.query('ROLLBACK').catch(() => undefined);
    holder.release();
    other.release();
  }
});

test('a committed append wakes LISTEN kafka_outbox with the schema name; results keep the caller order', async () => {
  const listener = new pg.Client({ connectionString: db.url });
  await listener.connect();
  try {
    const notes: { channel: string; payload?: string }[] = [];
    listener.on('notification', (n) => notes.push({ channel: n.channel, ...(n.payload !== undefined ? { payload: n.payload } : {}) }));
    await listener.query('LISTEN kafka_outbox');
    const eventId = '0b8c3e8e-9a56-4a0e-8f43-5b1f3f9d6b11';
    const r = await withTransaction(db.pool, async (c) => {
      const res = await appendEvents(c, [
        makeEvent('zeta', '1', { eventId }),
        makeEvent('alpha', '1'),
        makeEvent('zeta', '1', { occurredAt: new Date('2024-02-29T12:34:56.789Z') }),
      ]);
      await new Promise((res2) => setTimeout(res2, 100));
      expect(notes).toHaveLength(0); // delivered at commit, not before
      return res;
    });
    expect(r.status).toBe('appended');
    if (r.status !== 'appended') return;
    expect(r.events.map((e) => [e.aggregateType, e.aggregateVersion])).toEqual([
      ['zeta', 1],
      ['alpha', 1],
      ['zeta', 2],
    ]);
    expect(r.events[0]?.eventId).toBe(eventId);
    // Lock order: alpha's row was inserted (and got its id) before zeta's.
    expect(BigInt(r.events[1]!.id)).toBeLessThan(BigInt(r.events[0]!.id));
    expect(BigInt(r.events[0]!.id)).toBeLessThan(BigInt(r.events[2]!.id));
    const stored = await db.pool.query<{ occurred_at: Date }>(`SELECT occurred_at FROM outbox WHERE id = $1`, [r.events[2]!.id]);
    expect(stored.rows[0]?.occurred_at.toISOString()).toBe('2024-02-29T12:34:56.789Z');
    for (let i = 0; i < 50 && notes.length === 0; i++) await new Promise((res2) => setTimeout(res2, 20));
    expect(notes).toEqual([{ channel: 'kafka_outbox', payload: 'outbox' }]); // the default OUTBOX_SCHEMA
  } finally {
    await listener.end();
  }
});

test('invalid events are refused before the database with an error naming the field; the transaction is untouched', async () => {
  await db.pool.query('CREATE TABLE IF NOT EXISTS caller_work (id int PRIMARY KEY)');
  const cases: [string, Record<string, unknown>][] = [
    ['actorId', { actorId: undefined }],
    ['actorId', { actorId: '  ' }],
    ['traceId', { traceId: undefined }],
    ['traceId', { traceId: '' }],
    ['payload', { payload: [1, 2] }],
    ['payload', { payload: null }],
    ['payload', { payload: 'text' }],
    ['payload', { payload: { x: Number.NaN } }],
    ['payload', { payload: { x: 'nul\u0000' } }],
    ['schemaVersion', { schemaVersion: 0 }],
    ['aggregateId', { aggregateId: '' }],
    ['eventType', { eventType: undefined }],
    ['eventId', { eventId: 'not-a-uuid' }],
    ['occurredAt', { occurredAt: new Date(Number.NaN) }],
  ];
  await withTransaction(db.pool, async (client) => {
    await client.query('INSERT INTO caller_work VALUES (1)');
    for (const [field, override] of cases) {
      const bad = { ...makeEvent('val', 'v-1'), ...override } as never;
      const err = await appendEvents(client, [makeEvent('val', 'v-1'), bad]).catch((e: unknown) => e);
      expect(isOutboxError(err, 'PAYLOAD_INVALID')).toBe(true);
      expect((err as Error).message).toContain(`events[1].${field}`);
      expect((err as { details: Record<string, unknown> }).details).toMatchObject({ index: 1, field });
    }
    await client.query('INSERT INTO caller_work VALUES (2)');
    const ok = await appendEvents(client, [makeEvent('val', 'v-1')]);
    expect(ok).toMatchObject({ status: 'appended', events: [{ aggregateVersion: 1 }] });
  });
  const work = await db.pool.query('SELECT id FROM caller_work ORDER BY id');
  expect(work.rows).toEqual([{ id: 1 }, { id: 2 }]);
  expect((await versions('val')).get('v-1')).toEqual([1]);
});

test('outside a transaction (autocommit) an append with expectedVersion is its own transaction; a conflict is still a value', async () => {
  const client = await db.pool.connect();
  try {
    const first = await appendEvents(client, [makeEvent('auto', '1')], { expectedVersion: 0 });
    expect(first).toMatchObject({ status: 'appended', events: [{ aggregateVersion: 1 }] });
    const stale = await appendEvents(client, [makeEvent('auto', '1')], { expectedVersion: 0 });
    expect(stale).toEqual({ status: 'conflict', aggregateType: 'auto', aggregateId: '1', expectedVersion: 0, currentVersion: 1 });
    expect(await appendEvents(client, [makeEvent('auto', '1')], { expectedVersion: 1 })).toMatchObject({ status: 'appended', events: [{ aggregateVersion: 2 }] });
  } finally {
    client.release();
  }
});
