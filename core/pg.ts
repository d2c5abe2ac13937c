import pg from 'pg';
import type { Logger } from './logger';
import { errorMessage, OutboxError } from './errors';
import { isRetriablePgError } from './retry';
import { redact } from './redact';

/**
 * A PostgreSQL pool for DATABASE_URL. Connection errors (server restart, terminated backend) are logged,
 * never thrown as an unhandled 'error' event — for idle clients and for checked-out ones alike (a
 * checked-out client without a listener would crash the process); the query in progress fails instead,
 * and the caller's retry handles it.
 */
export function createPool(databaseUrl: string, logger: Logger, options: { max?: number; applicationName?: string } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max ?? 4,
    application_name: options.applicationName ?? 'kafka-outbox',
    connectionTimeoutMillis: 10_000,
  });
  pool.on('error', (err) => logger.warn({ err }, `idle PostgreSQL connection failed: ${redact(err.message)}`));
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.warn({ err }, `PostgreSQL connection failed: ${redact(err.message)}`));
  });
  return pool;
}

/** A single PostgreSQL connection (LISTEN, advisory locks: things that must stay on one session). */
export async function connectClient(databaseUrl: string, logger: Logger, applicationName = 'kafka-outbox'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: applicationName, connectionTimeoutMillis: 10_000 });
  client.on('error', (err) => logger.warn({ err }, `PostgreSQL connection failed: ${redact(err.message)}`));
  await client.connect();
  return client;
}

/** Quote an SQL identifier (schema, table). */
/** `host:port/database` of a PostgreSQL URL (never the credentials). */
export function dbTarget(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

interface PgErrorFields {
  code?: string;
  message?: string;
  detail?: string;
  column?: string;
}

/**
 * A PostgreSQL failure as an OutboxError naming what was being done: DB_UNAVAILABLE when the server or
 * the connection is gone, DB_BUSY when it could not do it now (lock or statement timeout, deadlock,
 * resources: both retriable), PAYLOAD_INVALID for the outbox's column validation (23502, 23514), and
 * DB_REJECTED for anything else the server refused. The SQLSTATE and column are kept in `details`.
 */
export function pgFailure(err: unknown, what: string): OutboxError {
  if (err instanceof OutboxError) return err;
  const e = (err ?? {}) as PgErrorFields;
  const details = { sqlstate: e.code, column: e.column };
  const message = `${what}: ${redact(errorMessage(err))}`;
  if (isRetriablePgError(err)) {
    const gone = e.code === undefined || !/^[0-9A-Z]{5}$/.test(e.code) || e.code.startsWith('08') || e.code.startsWith('57P');
    return new OutboxError(gone ? 'DB_UNAVAILABLE' : 'DB_BUSY', message, { cause: err, details });
  }
  if (e.code === '23502' || e.code === '23514') return new OutboxError('PAYLOAD_INVALID', errorMessage(err), { cause: err, details });
  return new OutboxError('DB_REJECTED', message, { cause: err, details });
}

/**
 * Run `fn` in a transaction: BEGIN, fn, COMMIT (ROLLBACK if fn throws). Given a pool, on a client of it
 * that is always released (discarded if its connection broke); given a client (one session that must
 * stay: a migration, a CLI command's connection), on that client, which stays the caller's. Returns fn's
 * result; fn's own errors propagate as they are; failures of BEGIN/COMMIT become OutboxErrors
 * (pgFailure). A COMMIT that PostgreSQL turned into a rollback (a statement failed and fn swallowed the
 * error) is DB_REJECTED.
 */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
export async function withTransaction<T>(client: pg.ClientBase, fn: (client: pg.ClientBase) => Promise<T>): Promise<T>;
export async function withTransaction<T>(db: pg.Pool | pg.ClientBase, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  // A pool, also one of another copy of pg (the application's): it counts its idle clients; a client does not.
  if (!(db instanceof pg.Pool) && typeof (db as { idleCount?: unknown }).idleCount !== 'number') return inTransaction(db as pg.PoolClient, fn, () => undefined);
  let client: pg.PoolClient;
  try {
    client = await (db as pg.Pool).connect();
  } catch (err) {
    throw new OutboxError('DB_UNAVAILABLE', `could not get a PostgreSQL connection: ${redact(errorMessage(err))}`, { cause: err });
  }
  let broken: Error | undefined;
  // While the transaction holds the client, a connection that dies is this transaction's failure (the next
  // statement rejects), not an unhandled 'error' event: a pool the application built has no listener here.
  const onError = (err: Error): void => {
    broken = err;
  };
  client.on('error', onError);
  try {
    return await inTransaction(client, fn, onError);
  } finally {
    client.removeListener('error', onError);
    client.release(broken);
  }
}

/** BEGIN, fn, COMMIT on `client` (see withTransaction); `broke` hears of a connection that can no longer be trusted. */
async function inTransaction<C extends pg.ClientBase, T>(client: C, fn: (client: C) => Promise<T>, broke: (err: Error) => void): Promise<T> {
  try {
    await client.query('BEGIN');
  } catch (err) {
    broke(err as Error);
    throw pgFailure(err, 'BEGIN failed');
  }
  let result: T;
  try {
    result = await fn(client);
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackErr) {
      broke(rollbackErr as Error);
    }
    throw err;
  }
  let committed: pg.QueryResult;
  try {
    committed = await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(broke);
    throw pgFailure(err, 'COMMIT failed');
  }
  if (committed.command === 'ROLLBACK') {
    throw new OutboxError('DB_REJECTED', 'the transaction was rolled back at COMMIT because a statement in it had failed');
  }
  return result;
}
