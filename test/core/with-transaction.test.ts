import pg from 'pg';
import { withTransaction } from '../../core/pg';
import { isRetriable } from '../../core/retry';
import { useTestDatabase } from '../support/isolation';

// withTransaction on a pool the application built itself (a plain pg.Pool, no 'error' listener on its
// clients): a connection that dies while the transaction holds it fails that transaction with a
// retriable error; it must not surface as an unhandled 'error' event that ends the process.
const db = useTestDatabase();

test('a connection killed between two statements of a transaction fails it as retriable, without an unhandled error event', async () => {
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  pool.on('error', () => undefined); // the application's own concern, for idle clients
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown): void => void uncaught.push(err);
  const previous = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', onUncaught);
  try {
    const outcome = await withTransaction(pool, async (client) => {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      // The server closes the connection; give the client time to notice before the next statement.
      await new Promise((r) => setTimeout(r, 500));
      await client.query('SELECT 1');
      return 'committed';
    }).catch((err: unknown) => err);
    expect(outcome).toBeInstanceOf(Error);
    expect(isRetriable(outcome)).toBe(true);
    expect(uncaught).toEqual([]);
    // The pool is usable afterwards: the broken client was discarded.
    expect(await withTransaction(pool, async (c) => (await c.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one)).toBe(1);
  } finally {
    process.removeListener('uncaughtException', onUncaught);
    for (const l of previous) process.on('uncaughtException', l);
    await pool.end();
  }
});

test('on a client, the transaction runs on that session and the client stays open: committed, or rolled back when fn throws', async () => {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query('CREATE TEMP TABLE t (v int)');
    const pid = await withTransaction(client, async (c) => {
      await c.query('INSERT INTO t VALUES (1)');
      return (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    });
    expect(pid).toBe((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
    const failed = await withTransaction(client, async (c) => {
      await c.query('INSERT INTO t VALUES (2)');
      throw new Error('no');
    }).catch((err: unknown) => err);
    expect(failed).toEqual(new Error('no'));
    expect((await client.query<{ v: number }>('SELECT v FROM t ORDER BY v')).rows).toEqual([{ v: 1 }]);
    expect((await client.query<{ s: string }>("SELECT current_setting('transaction_isolation') AS s, txid_current_if_assigned() AS x")).rows[0]).toMatchObject({ x: null });
  } finally {
    await client.end();
  }
});
