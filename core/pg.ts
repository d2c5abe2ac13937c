import pg from 'pg';
import type { Logger } from './logger';
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
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Errors that mean "PostgreSQL is not there right now" (retry) rather than "PostgreSQL refused this" (do not). */
export function isTransientPgError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (typeof e?.code === 'string') {
    // 08: connection exception; 57P01-03: admin shutdown / crash shutdown / cannot connect now; 53300: too many connections; 40001/40P01: serialization/deadlock
    if (/^08/.test(e.code) || ['57P01', '57P02', '57P03', '53300', '40001', '40P01', 'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE'].includes(e.code)) return true;
  }
  const msg = String(e?.message ?? '');
  return /Connection terminated|connection timeout|ECONNREFUSED|ECONNRESET|Client has encountered a connection error|terminating connection|not queryable/i.test(msg);
}
