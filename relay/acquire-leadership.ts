import net from 'node:net';
import pg from 'pg';
import { errorMessage, OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { redact } from '../core/redact';
import { settleWithin } from '../core/wait';
import { openLockConnection } from './lock-connection';

/** The advisory-lock class id of kafka-outbox relays ('ko'); the key is hashtext(<outbox schema>). */
export const LEADER_LOCK_CLASS = 0x6b6f;
/** application_name of the leader-lock connection (the console looks the lock holder up by it). */
export const LEADER_APPLICATION_NAME = 'kafka-outbox-relay-leader';

export interface LeadershipOptions {
  databaseUrl: string;
  /** The outbox schema: one leader per schema. */
  schema: string;
  logger: Logger;
  /** Called on the insert trigger's NOTIFY for this schema (a hint that there is work). */
  onNotify: () => void;
  /** How long the lock check before each claim may take before the leader steps down (default 5 s). */
  checkTimeoutMs?: number;
  /** TCP keepalive idle time of the lock connection (default 10 s). */
  keepAliveMs?: number;
}

/**
 * Leadership among relay instances: the holder of a session-level advisory lock (one per outbox schema)
 * is the only one publishing, so per-aggregate order holds with any number of instances. The lock lives
 * on a dedicated connection (TCP keepalive on); when the leader dies, PostgreSQL drops its session and
 * the lock with it, and a standby polling `pg_try_advisory_lock` takes over. The same connection
 * LISTENs for the insert trigger's NOTIFY, a latency hint that wakes the publishing loop early.
 *
 * Holding the lock is not a local flag: the leader calls `verify()` with each claim (at once; nothing
 * claimed is published before it answers), which asks PostgreSQL, on the lock's own session and within
 * `checkTimeoutMs`, whether that session still holds it. A connection that went silent (a network
 * partition, a terminated backend whose goodbye never arrived) fails the check and the leader steps down.
 * Between a check and the publication a leader can still lose the lock: the Kafka side fences that case
 * (kafka-sink.ts, transactional producer).
 *
 * The lock connection must be a real session: not through a transaction-pooling proxy (PgBouncer in
 * transaction mode), where the lock would stay on a server connection this session no longer owns.
 * The check after acquiring detects that case (the lock is not held by the session that asks).
 */
export class Leadership {
  private client: pg.Client | null = null;
  private socket: net.Socket | null = null;
  private held = false;
  private database: string | undefined;

  constructor(private readonly options: LeadershipOptions) {}

  get isLeader(): boolean {
    return this.held && this.client !== null;
  }

  /** `<database>.<schema>`: names this outbox (one leader, one Kafka transactional id); known once connected. */
  get outboxName(): string | undefined {
    return this.database === undefined ? undefined : `${this.database}.${this.options.schema}`;
  }

  /** Try once to become leader; true when this instance holds the lock. Throws when PostgreSQL is unreachable. */
  async tryAcquire(): Promise<boolean> {
    if (this.isLeader) return true;
    const client = this.client ?? (await this.connect());
    const { rows } = await client.query<{ ok: boolean; db: string }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok, current_database() AS db', [
      LEADER_LOCK_CLASS,
      this.options.schema,
    ]);
    this.database = rows[0]?.db;
    this.held = rows[0]?.ok === true;
    if (!this.held) return false;
    if (!(await this.holdsLock(client))) {
      await this.release();
      throw new OutboxError(
        'CONFIG_INVALID',
        'the relay leader lock was granted but its session does not hold it: the lock connection goes through a transaction-pooling proxy (PgBouncer transaction mode?); give the relay a direct or session-pooled DATABASE_URL',
      );
    }
    await client.query('LISTEN kafka_outbox');
    return true;
  }

  /**
   * Make sure this instance still leads: its lock session answers, within the check timeout, that it
   * holds the lock. Otherwise the connection is dropped and this throws OutboxError('FENCED').
   */
  async verify(): Promise<void> {
    const client = this.client;
    if (!client || !this.held) throw new OutboxError('FENCED', 'this relay no longer holds the leader lock (its connection was lost)');
    let holds: boolean;
    try {
      holds = await this.holdsLock(client);
    } catch (err) {
      await this.release();
      throw new OutboxError('FENCED', `the leader lock could not be confirmed, stepping down: ${redact(errorMessage(err))}`, { cause: err });
    }
    if (!holds) {
      await this.release();
      throw new OutboxError('FENCED', 'this relay no longer holds the leader lock, stepping down');
    }
  }

  /** Give up leadership and close the connection (the lock goes with the session). Never waits on a silent peer. */
  async release(): Promise<void> {
    const client = this.client;
    const socket = this.socket;
    this.client = null;
    this.socket = null;
    this.held = false;
    if (!client) return;
    await settleWithin(client.end(), 1000);
    socket?.destroy();
  }

  private async holdsLock(client: pg.Client): Promise<boolean> {
    const { rows } = await client.query<{ held: boolean }>({
      text: `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks
                             WHERE locktype = 'advisory' AND classid = $1::int::oid AND objid = pg_catalog.hashtext($2)::oid
                               AND objsubid = 2 AND granted AND pid = pg_catalog.pg_backend_pid()) AS held`,
      values: [LEADER_LOCK_CLASS, this.options.schema],
      query_timeout: this.options.checkTimeoutMs ?? 5000,
    } as pg.QueryConfig);
    return rows[0]?.held === true;
  }

  private async connect(): Promise<pg.Client> {
    const { client, socket } = await openLockConnection({
      databaseUrl: this.options.databaseUrl,
      applicationName: LEADER_APPLICATION_NAME,
      schema: this.options.schema,
      logger: this.options.logger,
      what: 'leader lock',
      onNotify: () => this.options.onNotify(),
      onLost: (lost) => {
        if (this.client !== lost) return;
        if (this.held) this.options.logger.warn('leadership connection lost; stepping down');
        this.client = null;
        this.socket = null;
        this.held = false;
      },
      ...(this.options.keepAliveMs !== undefined ? { keepAliveMs: this.options.keepAliveMs } : {}),
    });
    this.client = client;
    this.socket = socket;
    return client;
  }
}
