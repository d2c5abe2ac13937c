import { spawnSync } from 'node:child_process';
import type pg from 'pg';
import { appendEvents, computeHash, verifyChain, withTransaction, ZERO_HASH } from '../../writer';
import { useTestDatabase } from '../support/isolation';
import { makeEvent } from './helpers';

// The plain-SQL contract (what a Go, Python or Java service writes), the append-only history and the
// least-privilege application role, and the verifier finding a row altered behind the triggers' back.
const db = useTestDatabase();

const ISSUE_INSERT = `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
VALUES ('user', '42', 'UserEmailChanged', 1, '{"email":"ada@example.com"}'::jsonb, 'user:7', '4bf92f3577b34da6a3ce929d0e0e4736', 'req-123');`;

function psql(url: string, ...commands: string[]): { status: number | null; stdout: string; stderr: string } {
  const args = [url, '-X', '-At', '-v', 'ON_ERROR_STOP=1', ...commands.flatMap((c) => ['-c', c])];
  const r = spawnSync('psql', args, { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function onClient<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await db.pool.connect();
  try {
    return await fn(c);
  } finally {
    c.release();
  }
}

test('the exact INSERT from the issue, through psql as the application role, yields a row with event id, version and chain link', async () => {
  const first = psql(db.url, 'SET ROLE outbox_app', ISSUE_INSERT);
  expect(first.stderr).toBe('');
  expect(first.status).toBe(0);
  expect(first.stdout.trim().split('\n')).toEqual(['SET', 'INSERT 0 1']);
  const second = psql(db.url, 'SET ROLE outbox_app', ISSUE_INSERT);
  expect(second.status).toBe(0);

  const { rows } = await db.pool.query(
    `SELECT id::text, event_id::text, aggregate_version::int AS version, prev_hash, hash, tx_id::text,
            to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at, payload::text AS payload,
            actor_id, trace_id, correlation_id, causation_id, traceparent, event_type, schema_version
       FROM outbox WHERE aggregate_type = 'user' AND aggregate_id = '42' ORDER BY aggregate_version`,
  );
  expect(rows).toHaveLength(2);
  const [r1, r2] = rows as Record<string, unknown>[];
  expect(r1?.event_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  expect(r1?.version).toBe(1);
  expect(r2?.version).toBe(2);
  expect(r1?.tx_id).toMatch(/^\d+$/);
  expect(r1?.prev_hash).toEqual(ZERO_HASH);
  expect(r2?.prev_hash).toEqual(r1?.hash);
  // The chain link is recomputable outside PostgreSQL from the documented encoding.
  for (const [row, prev] of [
    [r1, ZERO_HASH],
    [r2, r1?.hash],
  ] as [Record<string, unknown>, Buffer][]) {
    const hash = computeHash(prev, {
      eventId: row.event_id as string,
      aggregateType: 'user',
      aggregateId: '42',
      aggregateVersion: row.version as number,
      eventType: row.event_type as string,
      schemaVersion: row.schema_version as number,
      occurredAt: row.occurred_at as string,
      actorId: row.actor_id as string,
      traceId: row.trace_id as string,
      correlationId: row.correlation_id as string | null,
      causationId: row.causation_id as string | null,
      traceparent: row.traceparent as string | null,
      payload: row.payload as string,
    });
    expect(hash).toEqual(row.hash);
  }
  expect(r1?.payload).toBe('{"email": "ada@example.com"}');
  // The delivery bookkeeping row exists, apart from the history.
  const delivery = await db.pool.query(`SELECT aggregate_version::int AS v, delivered_at, attempts FROM outbox_delivery WHERE id = $1`, [r1?.id]);
  expect(delivery.rows).toEqual([{ v: 1, delivered_at: null, attempts: 0 }]);

  // Supplied values for database-assigned columns are overridden; expected_version is honoured.
  const spoof = psql(
    db.url,
    'SET ROLE outbox_app',
    `INSERT INTO outbox (id, aggregate_type, aggregate_id, aggregate_version, event_type, schema_version, payload, actor_id, trace_id, prev_hash, hash, tx_id, expected_version)
     VALUES (999999, 'user', '42', 77, 'X', 1, '{}', 'a', 't', '\\x00', '\\x00', '1', 2)`,
  );
  expect(spoof.status).toBe(0);
  const s = await db.pool.query(
    `SELECT id::text, aggregate_version::int AS v, octet_length(hash) AS hl FROM outbox WHERE aggregate_type = 'user' AND aggregate_id = '42' AND aggregate_version = 3`,
  );
  expect(s.rows).toHaveLength(1);
  expect(s.rows[0]).toMatchObject({ v: 3, hl: 32 });
  expect(s.rows[0].id).not.toBe('999999');
  const stale = psql(
    db.url,
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, expected_version) VALUES ('user', '42', 'X', 1, '{}', 'a', 't', 1)`,
  );
  expect(stale.status).not.toBe(0);
  expect(stale.stderr).toContain('outbox.expected_version 1 does not match the current version 3 of aggregate user/42');
  expect(stale.stderr).toContain('DETAIL:  current_version=3');
  await onClient(async (c) => expect(await verifyChain(c)).toMatchObject({ ok: true, checked: 3 }));
});

test('plain SQL: missing actor_id/trace_id or a non-object payload is refused naming the column; the transaction goes on', async () => {
  await db.pool.query('CREATE TABLE users (id text PRIMARY KEY, email text)');
  await db.pool.query('GRANT SELECT, INSERT, UPDATE ON users TO outbox_app');
  const cases: { sql: string; code: string; column: string; message: RegExp }[] = [
    {
      sql: `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, trace_id) VALUES ('user', 'p', 'E', 1, '{}', 't')`,
      code: '23502',
      column: 'actor_id',
      message: /^outbox\.actor_id is required/,
    },
    {
      sql: `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('user', 'p', 'E', 1, '{}', '', 't')`,
      code: '23514',
      column: 'actor_id',
      message: /^outbox\.actor_id must not be empty/,
    },
    {
      sql: `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id) VALUES ('user', 'p', 'E', 1, '{}', 'a')`,
      code: '23502',
      column: 'trace_id',
      message: /^outbox\.trace_id is required/,
    },
    {
      sql: `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('user', 'p', 'E', 1, '[1,2]', 'a', 't')`,
      code: '23514',
      column: 'payload',
      message: /^outbox\.payload must be a JSON object, got array$/,
    },
    {
      sql: `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('user', 'p', 'E', 1, '"s"', 'a', 't')`,
      code: '23514',
      column: 'payload',
      message: /^outbox\.payload must be a JSON object, got string$/,
    },
    {
      sql: `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('user', 'p', 'E', 0, '{}', 'a', 't')`,
      code: '23514',
      column: 'schema_version',
      message: /^outbox\.schema_version must be at least 1, got 0$/,
    },
    {
      sql: `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('', 'p', 'E', 1, '{}', 'a', 't')`,
      code: '23514',
      column: 'aggregate_type',
      message: /^outbox\.aggregate_type must not be empty$/,
    },
  ];
  await onClient(async (c) => {
    await c.query('BEGIN');
    await c.query('SET LOCAL ROLE outbox_app');
    await c.query(`INSERT INTO users VALUES ('p', 'old@example.com')`);
    for (const k of cases) {
      await c.query('SAVEPOINT ev');
      const err = (await c.query(k.sql).catch((e: unknown) => e)) as { code?: string; column?: string; message?: string };
      expect(err).toMatchObject({ code: k.code, column: k.column });
      expect(err.message).toMatch(k.message);
      await c.query('ROLLBACK TO SAVEPOINT ev');
    }
    await c.query(`UPDATE users SET email = 'new@example.com' WHERE id = 'p'`);
    await c.query(
      `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('user', 'p', 'E', 1, '{"email":"new@example.com"}', 'a', 't')`,
    );
    await c.query('COMMIT');
  });
  expect((await db.pool.query(`SELECT email FROM users`)).rows).toEqual([{ email: 'new@example.com' }]);
  expect((await db.pool.query(`SELECT aggregate_version::int AS v FROM outbox WHERE aggregate_id = 'p'`)).rows).toEqual([{ v: 1 }]);
});

test('history is append-only: the application role cannot UPDATE, DELETE or TRUNCATE, nor can the owner; the role owns nothing', async () => {
  await withTransaction(db.pool, (c) => appendEvents(c, [makeEvent('ao', '1'), makeEvent('ao', '1')]));
  const asApp = async (sql: string): Promise<{ code?: string; message?: string }> =>
    onClient(async (c) => {
      await c.query('BEGIN');
      try {
        await c.query('SET LOCAL ROLE outbox_app');
        return (await c.query(sql).then(
          () => ({}),
          (e: unknown) => e,
        )) as { code?: string; message?: string };
      } finally {
        await c.query('ROLLBACK');
      }
    });
  for (const sql of [
    `UPDATE outbox SET payload = '{}'`,
    'DELETE FROM outbox',
    'TRUNCATE outbox',
    `UPDATE outbox_aggregates SET version = 0`,
    'DELETE FROM outbox_delivery',
    `INSERT INTO outbox_aggregates VALUES ('x', 'y', 1, '\\x00')`,
  ]) {
    const err = await asApp(sql);
    expect(err.code).toBe('42501');
    expect(err.message).toMatch(/^permission denied for table outbox(_aggregates|_delivery)?$/);
  }
  // Even the owner (superuser here) is stopped by the row and statement triggers.
  for (const [sql, op] of [
    [`UPDATE outbox SET payload = '{}'`, 'UPDATE'],
    ['DELETE FROM outbox', 'DELETE'],
    ['TRUNCATE outbox CASCADE', 'TRUNCATE'],
  ] as const) {
    const err = (await db.pool.query(sql).catch((e: unknown) => e)) as { message?: string; code?: string };
    expect(err.message).toBe(`outbox is append-only: ${op} is not allowed`);
    expect(err.code).toBe('23001');
  }
  const owners = await db.pool.query<{ tableowner: string }>(
    `SELECT tableowner FROM pg_tables WHERE schemaname = 'outbox' AND tablename IN ('outbox', 'outbox_aggregates', 'outbox_delivery')`,
  );
  expect(owners.rows).toHaveLength(3);
  for (const r of owners.rows) expect(r.tableowner).not.toBe('outbox_app');
  const privs = await db.pool.query<{ p: string }>(
    `SELECT string_agg(privilege_type, ',' ORDER BY privilege_type) AS p FROM information_schema.role_table_grants WHERE grantee = 'outbox_app' AND table_name = 'outbox'`,
  );
  expect(privs.rows[0]?.p).toBe('INSERT,SELECT');
  const role = await db.pool.query(`SELECT rolcanlogin, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = 'outbox_app'`);
  expect(role.rows).toEqual([{ rolcanlogin: false, rolsuper: false, rolcreaterole: false }]);
  // The role's own appends work (the insert triggers run as their owner).
  const asAppend = await onClient(async (c) => {
    await c.query('BEGIN');
    await c.query('SET LOCAL ROLE outbox_app');
    const r = await appendEvents(c, [makeEvent('ao', '1')], { expectedVersion: 2 });
    await c.query('COMMIT');
    return r;
  });
  expect(asAppend).toMatchObject({ status: 'appended', events: [{ aggregateVersion: 3 }] });
});

test('a row altered by a superuser behind the triggers is found by verifyChain, which names the first broken link', async () => {
  await withTransaction(db.pool, (c) =>
    appendEvents(c, [
      ...Array.from({ length: 4 }, (_, i) => makeEvent('tamper', 'A', { payload: { i } })),
      ...Array.from({ length: 4 }, (_, i) => makeEvent('tamper', 'B', { payload: { i } })),
    ]),
  );
  await onClient(async (c) => expect(await verifyChain(c, { aggregate: { type: 'tamper', id: 'B' } })).toMatchObject({ ok: true, checked: 4 }));
  const target = await db.pool.query<{ event_id: string }>(`SELECT event_id::text FROM outbox WHERE aggregate_type = 'tamper' AND aggregate_id = 'B' AND aggregate_version = 2`);
  const eventId = target.rows[0]!.event_id;

  await onClient(async (c) => {
    await c.query('BEGIN');
    await c.query('SET LOCAL session_replication_role = replica');
    await c.query(`UPDATE outbox SET payload = '{"i": 1000}' WHERE event_id = $1`, [eventId]);
    await c.query('COMMIT');
  });
  const broken = await onClient((c) => verifyChain(c));
  expect(broken.ok).toBe(false);
  expect(broken.firstBroken).toMatchObject({ aggregateType: 'tamper', aggregateId: 'B', version: 2, eventId });
  expect(broken.firstBroken?.reason).toMatch(/^hash mismatch/);
  // Aggregates ordered before the broken one were checked in full (tamper/A: 4 events, plus B version 1).
  expect(broken.checked).toBeGreaterThanOrEqual(6);
  await onClient(async (c) => expect(await verifyChain(c, { aggregate: { type: 'tamper', id: 'A' } })).toMatchObject({ ok: true, checked: 4 }));

  // Other kinds of tampering: a deleted middle event (gap) and a deleted tail (head ahead of the rows).
  await onClient(async (c) => {
    await c.query('BEGIN');
    await c.query('SET LOCAL session_replication_role = replica');
    await c.query(`DELETE FROM outbox_delivery WHERE aggregate_type = 'tamper' AND aggregate_id = 'A' AND aggregate_version IN (2, 4)`);
    await c.query(`DELETE FROM outbox WHERE aggregate_type = 'tamper' AND aggregate_id = 'A' AND aggregate_version IN (2, 4)`);
    await c.query('COMMIT');
  });
  const gap = await onClient((c) => verifyChain(c, { aggregate: { type: 'tamper', id: 'A' } }));
  expect(gap).toMatchObject({ ok: false, firstBroken: { aggregateType: 'tamper', aggregateId: 'A', version: 2, eventId: null } });
  expect(gap.firstBroken?.reason).toMatch(/version 2 is missing/);
  const all = await onClient((c) => verifyChain(c));
  expect(all.firstBroken).toMatchObject({ aggregateId: 'A', version: 2 }); // A sorts before B: the first broken link
});
