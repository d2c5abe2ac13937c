import net from 'node:net';
import pg from 'pg';
import type { Logger } from '../core/logger';
import { redact } from '../core/redact';

/** A dedicated PostgreSQL connection that holds session advisory locks (the leader's, or a relay's shards). */
export interface LockConnection {
  client: pg.Client;
  /** The socket under it: destroyed to drop the connection at once (the locks go with the session). */
  socket: net.Socket | null;
}

export interface OpenLockConnectionOptions {
  databaseUrl: string;
  applicationName: string;
  /** The outbox schema: the insert trigger's NOTIFY for it calls onNotify. */
  schema: string;
  logger: Logger;
  /** TCP keepalive delay, so that a dead peer is noticed (default 10 s). */
  keepAliveMs?: number;
  /** What the locks are, for the log ("leader lock", "shard lock"). */
  what: string;
  onNotify(): void;
  /** Called once when the connection fails or ends: every lock it held is gone. */
  onLost(client: pg.Client): void;
}

/** Open a lock connection that listens for the insert trigger's NOTIFY and reports its loss once. */
export async function openLockConnection(o: OpenLockConnectionOptions): Promise<LockConnection> {
  let socket: net.Socket | null = null;
  const client = new pg.Client({
    connectionString: o.databaseUrl,
    application_name: o.applicationName.slice(0, 63),
    connectionTimeoutMillis: 10_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: o.keepAliveMs ?? 10_000,
    stream: () => (socket = new net.Socket()),
  });
  client.on('error', (err) => {
    o.logger.warn({ err }, `${o.what} connection failed: ${redact(err.message)}`);
    o.onLost(client);
  });
  client.on('end', () => o.onLost(client));
  client.on('notification', (msg) => {
    if (msg.channel === 'kafka_outbox' && (msg.payload === o.schema || !msg.payload)) o.onNotify();
  });
  try {
    await client.connect();
  } catch (err) {
    (socket as net.Socket | null)?.destroy();
    throw err;
  }
  return { client, socket };
}
