import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { verifyChain } from '../../writer';
import { useTestDatabase } from '../support/isolation';

// An aggregate's head only ever points at a stored event: an INSERT ... ON CONFLICT DO NOTHING whose
// event_id turns out to be taken (by a transaction that was still open when the insert trigger ran)
// skips the row and leaves the head where it was, instead of pointing at an event that was never
// stored (the next event would get version 2 and a prev_hash nobody has). Whatever the session sets.
const db = useTestDatabase();

const insert = (eventId: string, aggregateId: string, onConflict = '') =>
  `INSERT INTO outbox.outbox (event_id, aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
   VALUES ('${eventId}', 'acct', '${aggregateId}', 'Opened', 1, '{}', 'user:1', 't-1') ${onConflict} RETURNING aggregate_version`;

/** Resolves once `pid` waits for a lock (the other transaction's uncommitted row). */
async function waitUntilBlocked(observer: pg.PoolClient, pid: number): Promise<void> {
  for (;;) {
    const { rows } = await observer.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'`, [pid]);
    if (rows.length > 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function head(c: pg.PoolClient, aggregateId: string): Promise<{ version: string } | undefined> {
  const { rows } = await c.query<{ version: string }>(`SELECT version FROM outbox.outbox_aggregates WHERE aggregate_type = 'acct' AND aggregate_id = $1`, [aggregateId]);
  return rows[0];
}

test('ON CONFLICT DO NOTHING by the app role, racing an uncommitted duplicate event_id, skips the row and leaves no phantom head', async () => {
  const [other, app, observer] = await Promise.all([db.pool.connect(), db.pool.connect(), db.pool.connect()]);
  try {
    const eventId = randomUUID();
    await other.query('BEGIN');
    await other.query(insert(eventId, 'b'));

    await app.query('BEGIN');
    await app.query('SET LOCAL ROLE outbox_app');
    await app.query('SAVEPOINT before_insert');
    const appPid = (await app.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const racing = app.query(insert(eventId, 'a', 'ON CONFLICT DO NOTHING')).then(
      (r) => ({ rows: r.rows as unknown[] }),
      (e: unknown) => e as Error & { code?: string },
    );
    await waitUntilBlocked(observer, appPid);
    await other.query('COMMIT');

    expect(await racing).toEqual({ rows: [] });

    // The next event of the aggregate is its first, chained to the genesis hash.
    const next = await app.query<{ aggregate_version: string }>(insert(randomUUID(), 'a'));
    expect(next.rows).toEqual([{ aggregate_version: '1' }]);
    await app.query('COMMIT');

    expect(await head(observer, 'a')).toEqual({ version: '1' });
    expect(await verifyChain(observer, { schema: 'outbox' })).toMatchObject({ ok: true });
  } finally {
    for (const c of [other, app, observer]) c.release();
  }
});

test('a multi-row ON CONFLICT DO NOTHING skips only the racing duplicate; the other rows chain as if it had never been written', async () => {
  const [other, app, observer] = await Promise.all([db.pool.connect(), db.pool.connect(), db.pool.connect()]);
  try {
    const taken = randomUUID();
    await other.query('BEGIN');
    await other.query(insert(taken, 'multi-b'));

    await app.query('BEGIN');
    await app.query('SET LOCAL ROLE outbox_app');
    const appPid = (await app.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const sql = `INSERT INTO outbox.outbox (event_id, aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
                 VALUES ('${randomUUID()}', 'acct', 'multi-a', 'Opened', 1, '{}', 'user:1', 't-1'),
                        ('${taken}', 'acct', 'multi-a', 'Renamed', 1, '{}', 'user:1', 't-1'),
                        ('${randomUUID()}', 'acct', 'multi-c', 'Opened', 1, '{}', 'user:1', 't-1')
                 ON CONFLICT (event_id) DO NOTHING`;
    const racing = app.query(sql).then(
      (r) => ({ rowCount: r.rowCount }),
      (e: unknown) => e as Error & { code?: string },
    );
    await waitUntilBlocked(observer, appPid);
    await other.query('COMMIT');
    expect(await racing).toEqual({ rowCount: 2 });
    // The event after the skipped one in the same statement takes the skipped one's place.
    expect((await app.query<{ aggregate_version: string }>(insert(randomUUID(), 'multi-a'))).rows).toEqual([{ aggregate_version: '2' }]);
    await app.query('COMMIT');

    const stored = await observer.query<{ aggregate_id: string; aggregate_version: string; event_type: string }>(
      `SELECT aggregate_id, aggregate_version, event_type FROM outbox.outbox WHERE aggregate_id IN ('multi-a', 'multi-c') ORDER BY aggregate_id, aggregate_version`,
    );
    expect(stored.rows).toEqual([
      { aggregate_id: 'multi-a', aggregate_version: '1', event_type: 'Opened' },
      { aggregate_id: 'multi-a', aggregate_version: '2', event_type: 'Opened' },
      { aggregate_id: 'multi-c', aggregate_version: '1', event_type: 'Opened' },
    ]);
    expect(await head(observer, 'multi-a')).toEqual({ version: '2' });
    expect(await head(observer, 'multi-c')).toEqual({ version: '1' });
    expect(await verifyChain(observer, { schema: 'outbox' })).toMatchObject({ ok: true });
  } finally {
    for (const c of [other, app, observer]) c.release();
  }
});

test('ON CONFLICT DO NOTHING without a conflict appends as usual; with a committed duplicate it skips the row; a plain duplicate INSERT fails with 23505', async () => {
  const c = await db.pool.connect();
  try {
    await c.query('SET ROLE outbox_app');
    const eventId = randomUUID();
    expect((await c.query(insert(eventId, 'plain', 'ON CONFLICT DO NOTHING'))).rows).toEqual([{ aggregate_version: '1' }]);
    expect((await c.query(insert(eventId, 'plain-2', 'ON CONFLICT (event_id) DO NOTHING'))).rows).toEqual([]);
    const dup = await c.query(insert(eventId, 'plain-2')).catch((e: unknown) => e as Error & { code?: string; constraint?: string });
    expect(dup).toMatchObject({ code: '23505', constraint: 'outbox_event_id_key' });
    expect((await c.query(insert(randomUUID(), 'plain-2'))).rows).toEqual([{ aggregate_version: '1' }]);
    expect(await verifyChain(c, { schema: 'outbox' })).toMatchObject({ ok: true });
  } finally {
    await c.query('RESET ROLE');
    c.release();
  }
});

test('a session that sets kafka_outbox.heads_moved itself still cannot leave a phantom head with ON CONFLICT DO NOTHING', async () => {
  const [other, app, observer] = await Promise.all([db.pool.connect(), db.pool.connect(), db.pool.connect()]);
  try {
    const eventId = randomUUID();
    await other.query('BEGIN');
    await other.query(insert(eventId, 'forged-b'));

    await app.query('BEGIN');
    await app.query('SET LOCAL ROLE outbox_app');
    await app.query(`SET LOCAL kafka_outbox.heads_moved = '-1'`);
    await app.query('SAVEPOINT before_insert');
    const appPid = (await app.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const racing = app.query(insert(eventId, 'forged-a', 'ON CONFLICT DO NOTHING')).then(
      (r) => ({ rows: r.rows as unknown[] }),
      (e: unknown) => e as Error & { code?: string },
    );
    await waitUntilBlocked(observer, appPid);
    await other.query('COMMIT');
    const outcome = await racing;
    if (outcome instanceof Error) await app.query('ROLLBACK TO SAVEPOINT before_insert');

    const next = await app.query<{ aggregate_version: string }>(insert(randomUUID(), 'forged-a'));
    expect(next.rows).toEqual([{ aggregate_version: '1' }]);
    await app.query('COMMIT');
    expect(await head(observer, 'forged-a')).toEqual({ version: '1' });
    expect(await verifyChain(observer, { schema: 'outbox' })).toMatchObject({ ok: true });
  } finally {
    for (const c of [other, app, observer]) c.release();
  }
});
