import type pg from 'pg';
import { connectClient } from '../core/pg';
import type { Logger } from '../core/logger';

const LOCK_CLASS = 0x6b6f; // 'ko': the advisory-lock class id of kafka-outbox relays

/**
 * Leadership among relay instances: the holder of a session-level advisory lock (one per outbox schema)
 * is the only one publishing, so per-aggregate order holds with any number of instances. The lock lives
 * on a dedicated connection; when the leader dies, PostgreSQL drops its session and the lock with it,
 * and a standby polling `pg_try_advisory_lock` takes over. The same connection LISTENs for the insert
 * trigger's NOTIFY, a latency hint that wakes the publishing loop early.
 */
export class Leadership {
  private client: pg.Client | null = null;
  private held = false;

  constructor(
    private readonly options: { databaseUrl: string; schema: string; logger: Logger; onNotify: () => void },
  ) {}

  get isLeader(): boolean {
    return this.held && this.client !== null;
  }

  /** Try once to become leader; true when this instance holds the lock. Throws when PostgreSQL is unreachable. */
  async tryAcquire(): Promise<boolean> {
    if (this.isLeader) return true;
    if (!this.client) {
      const client = await connectClient(this.options.databaseUrl, this.options.logger, 'kafka-outbox-relay-leader');
      const drop = (): void => {
        if (this.client === client) {
          if (this.held) this.options.logger.warn('leadership connection lost; stepping down');
          this.client = null;
          this.held = false;
        }
      };
      client.on('error', drop);
      client.on('end', drop);
      client.on('notification', (msg) => {
        if (msg.channel === 'kafka_outbox' && (msg.payload === this.options.schema || !msg.payload)) this.options.onNotify();
      });
      this.client = client;
    }
    const { rows } = await this.client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [LOCK_CLASS, this.options.schema]);
    this.held = rows[0]?.ok === true;
    if (this.held) await this.client.query('LISTEN kafka_outbox');
    return this.held;
  }

  /** Give up leadership and close the connection (the lock goes with the session). */
  async release(): Promise<void> {
    const client = this.client;
    this.client = null;
    this.held = false;
    if (client) await client.end().catch(() => undefined);
  }
}
