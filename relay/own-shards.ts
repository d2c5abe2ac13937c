import net from 'node:net';
import pg from 'pg';
import { errorMessage, OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { ident } from '../core/pg';
import { redact } from '../core/redact';
import { settleWithin } from '../core/wait';
import { openLockConnection } from './lock-connection';
import { formatShards, planShards } from './shard-plan';

/** The second advisory-lock key of a relay's membership (shared); the first is hashtext(<outbox schema>). */
export const MEMBER_LOCK_KEY = 0x6b6d0000;
/** The second advisory-lock key of shard n is SHARD_LOCK_BASE + n ('ks'). */
export const SHARD_LOCK_BASE = 0x6b730000;
/** application_name prefix of the shard-lock connection (`outbox status` finds the instances by it). */
export const SHARDS_APPLICATION_NAME = 'kafka-outbox-relay-shards';

export interface ShardOwnershipOptions {
  databaseUrl: string;
  /** The outbox schema. */
  schema: string;
  /** Shown in `outbox status` (in the lock connection's application_name). */
  instanceId: string;
  logger: Logger;
  /** Called on the insert trigger's NOTIFY for this schema (a hint that there is work). */
  onNotify: () => void;
  /** How often the shares are compared with the running instances (default 1 s). */
  rebalanceIntervalMs?: number;
  /** How long a lock check may take before this instance gives up its shards (default 5 s). */
  checkTimeoutMs?: number;
  /** TCP keepalive idle time of the lock connection (default 10 s). */
  keepAliveMs?: number;
  /**
   * Shards were just locked: claim their destination (a transactional sink fences their previous
   * owner's producer). Runs before the lock check that precedes their first claim.
   */
  onAcquired?(shards: number[]): Promise<void>;
  /** Shards were given up or lost. */
  onReleased?(shards: number[]): Promise<void>;
  /** The number of shards this instance claims from changed (for the outbox_relay_shards_owned gauge). */
  onOwned?(count: number): void;
}

/**
 * Ownership of delivery-queue shards among active-active relay instances: the Leadership of a sharded
 * relay (it implements run-relay.ts's LeadershipPort). Each instance holds, on one dedicated
 * connection, a shared membership advisory lock and one exclusive advisory lock per shard it owns; the
 * lock table is the registry, so an instance that dies (its session ends) leaves the membership and
 * frees its shards at once, and the survivors take them at their next rebalance.
 *
 * `isLeader` means "an active member" (connected and registered), whether or not it owns shards at
 * the moment. `verify` runs before each claim: it confirms, on the lock session and within the check
 * timeout, that every owned shard is still locked by it (else OutboxError FENCED, and all shards go).
 *
 * Rebalancing runs on its own timer (every rebalance interval, on the lock connection), not in the
 * claim loop, so an instance whose loop is busy with a long batch or waits in its error back-off still
 * takes free shards as soon as it sees them: it compares the owned shards with its fair share
 * (shard-plan.ts), locks free shards, and claims their destination (onAcquired) in the background (a
 * slow one does not hold up the next ticks); only then adds them to the shards it claims from and
 * wakes the loop (onNotify). A shard whose destination cannot be
 * claimed is unlocked again and tried at the next tick. A surplus shard is handed over in two steps,
 * so that no other instance can publish it while this one still does: the timer marks it; the next
 * verify leaves it out of the claims from then on (the batch in flight may still hold its events); at
 * the verify after that, that batch is acknowledged and marked (the relay loop verifies only after
 * marking the batch before the one in flight), and it is unlocked. The loop never pauses for either.
 */
export class ShardOwnership {
  private client: pg.Client | null = null;
  private socket: net.Socket | null = null;
  private registered = false;
  private database: string | undefined;
  private shardCount = 0;
  /** Shards locked by this instance. */
  private readonly held = new Set<number>();
  /** Shards locked whose destination is being claimed (not claimed from yet). */
  private readonly acquiring = new Set<number>();
  /** Surplus shards the timer chose to give up: left out of the claims from the next verify on. */
  private readonly surplus = new Set<number>();
  /** Surplus shards no longer claimed from, unlocked at the next verify. */
  private readonly releasing = new Set<number>();
  private pid = 0;
  private timer: NodeJS.Timeout | undefined;
  /** A rebalance is running (ticks do not overlap). */
  private rebalancing: Promise<void> | null = null;
  private lastOwned = -1;

  /** A verify moves shards being handed over out of the claims: the claim waits for it. */
  readonly verifyShapesClaim = true;

  constructor(private readonly options: ShardOwnershipOptions) {}

  get isLeader(): boolean {
    return this.registered && this.client !== null;
  }

  get outboxName(): string | undefined {
    return this.database === undefined ? undefined : `${this.database}.${this.options.schema}`;
  }

  /** The shards this instance claims from now, ascending (a shard being handed over is not among them). */
  get shards(): number[] {
    return [...this.held].filter((s) => !this.releasing.has(s)).sort((a, b) => a - b);
  }

  /** Register as a member (the shards follow at the first `verify`). Throws when PostgreSQL is unreachable. */
  async tryAcquire(): Promise<boolean> {
    if (this.isLeader) return true;
    const client = this.client ?? (await this.connect());
    const { rows } = await client.query<{ db: string; pid: number; shards: number | null }>(
      `SELECT pg_catalog.pg_advisory_lock_shared(pg_catalog.hashtext($1), $2) IS NOT NULL AS ok, pg_catalog.current_database() AS db,
              pg_catalog.pg_backend_pid() AS pid, (SELECT s.shard_count FROM ${ident(this.options.schema)}.outbox_sharding s) AS shards`,
      [this.options.schema, MEMBER_LOCK_KEY],
    );
    const row = rows[0]!;
    if (row.shards === null) throw new OutboxError('CONFIG_INVALID', `the outbox schema ${this.options.schema} has no relay shards: run outbox migrate`);
    this.database = row.db;
    this.pid = row.pid;
    this.shardCount = row.shards;
    await client.query('LISTEN kafka_outbox');
    this.registered = true;
    this.options.logger.info({ member: this.pid, shardCount: this.shardCount }, `joined the sharded relays (${this.shardCount} shards)`);
    this.startRebalancing(client);
    return true;
  }

  /** Rebalance now and then every interval while this connection is the registered one. */
  private startRebalancing(client: pg.Client): void {
    clearInterval(this.timer);
    const tick = (): void => {
      if (this.client !== client || !this.registered) {
        clearInterval(this.timer);
        return;
      }
      if (this.rebalancing) return;
      this.rebalancing = this.rebalance(client)
        .catch((err: unknown) => {
          if (this.client !== client) return;
          this.options.logger.warn({ err }, `shard rebalance failed, retrying in ${this.intervalMs} ms: ${redact(errorMessage(err))}`);
        })
        .finally(() => (this.rebalancing = null));
    };
    this.timer = setInterval(tick, this.intervalMs);
    this.timer.unref();
    tick();
  }

  private get intervalMs(): number {
    return this.options.rebalanceIntervalMs ?? 1000;
  }

  private reportOwned(): void {
    const n = this.isLeader ? this.shards.length : 0;
    if (n === this.lastOwned) return;
    this.lastOwned = n;
    this.options.onOwned?.(n);
  }

  async verify(): Promise<void> {
    const client = this.client;
    if (!client || !this.registered) throw new OutboxError('FENCED', 'this relay no longer holds its shard locks (its connection was lost)');
    try {
      if (this.releasing.size > 0) await this.unlockReleasing(client);
      // Surplus chosen by the timer since the previous verify: left out of the claims from now on.
      for (const s of this.surplus) if (this.held.has(s)) this.releasing.add(s);
      this.surplus.clear();
      this.reportOwned();
      const view = await this.locks(client);
      const mine = new Set(view.filter((l) => l.pid === this.pid && l.shard !== null).map((l) => l.shard!));
      const lost = [...this.held].filter((s) => !mine.has(s));
      if (lost.length > 0 || !view.some((l) => l.pid === this.pid && l.shard === null)) {
        throw new OutboxError('FENCED', `this relay no longer holds its locks (shards ${formatShards(lost)}), stepping down`);
      }
    } catch (err) {
      await this.release();
      if (err instanceof OutboxError && err.code === 'FENCED') throw err;
      throw new OutboxError('FENCED', `the shard locks could not be confirmed, giving them up: ${redact(errorMessage(err))}`, { cause: err });
    }
  }

  /** Leave: close the connection (its locks go with the session). Never waits on a silent peer. */
  async release(): Promise<void> {
    const client = this.client;
    const socket = this.socket;
    const dropped = [...this.held];
    clearInterval(this.timer);
    this.client = null;
    this.socket = null;
    this.registered = false;
    this.held.clear();
    this.acquiring.clear();
    this.surplus.clear();
    this.releasing.clear();
    this.reportOwned();
    if (dropped.length > 0) await this.options.onReleased?.(dropped).catch(() => undefined);
    if (!client) return;
    await settleWithin(client.end(), 1000);
    socket?.destroy();
  }

  /** One rebalance tick (timer): choose the surplus, take free shards up to the fair share. */
  private async rebalance(client: pg.Client): Promise<void> {
    const log = this.options.logger;
    const view = await this.locks(client);
    if (this.client !== client) return;
    const members = view.filter((l) => l.shard === null).map((l) => l.pid);
    if (!members.includes(this.pid)) return; // verify notices and steps down
    const plan = planShards({
      shardCount: this.shardCount,
      members,
      self: this.pid,
      // Shards already on their way out count as given up.
      owned: new Set([...[...this.held].filter((s) => !this.surplus.has(s) && !this.releasing.has(s)), ...this.acquiring]),
      // ... and are not to be taken again: count them as held by others.
      taken: new Set([...view.filter((l) => l.pid !== this.pid && l.shard !== null).map((l) => l.shard!), ...this.surplus, ...this.releasing]),
    });
    if (plan.release.length > 0) {
      for (const shard of plan.release) this.surplus.add(shard);
      log.info({ releasing: plan.release, quota: plan.quota }, `handing over shards ${formatShards(plan.release)} (fair share ${plan.quota})`);
      this.options.onNotify(); // the next verify starts the handover
    }
    const acquire = plan.acquire;
    if (acquire.length === 0) return;
    const seenAt = Date.now();
    const { rows } = await client.query<{ shard: number }>(
      `SELECT s AS shard FROM pg_catalog.unnest($3::int[]) AS s WHERE pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext($1), $2 + s)`,
      [this.options.schema, SHARD_LOCK_BASE, acquire],
    );
    const acquired = rows.map((r) => r.shard);
    if (acquired.length === 0) return;
    const lockedAt = Date.now();
    // Their destination is claimed in the background: a slow one (InitProducerId under load) does not
    // hold up the next ticks, which go on taking shards that are freed meanwhile.
    for (const s of acquired) this.acquiring.add(s);
    void this.claimDestination(client, acquired, { quota: plan.quota, seenAt, lockedAt });
  }

  /** onAcquired for freshly locked shards, then claim from them (or unlock them if it failed). */
  private async claimDestination(client: pg.Client, acquired: number[], at: { quota: number; seenAt: number; lockedAt: number }): Promise<void> {
    const log = this.options.logger;
    try {
      await this.options.onAcquired?.(acquired);
    } catch (err) {
      // The destination could not be claimed for them (Kafka down?): give them back, try again next tick.
      for (const s of acquired) this.acquiring.delete(s);
      if (this.client === client) {
        await client
          .query('SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext($1), $2 + s) FROM pg_catalog.unnest($3::int[]) AS s', [this.options.schema, SHARD_LOCK_BASE, acquired])
          .catch(() => undefined);
        log.warn({ err, shards: acquired }, `could not claim the destination of shards ${formatShards(acquired)}, unlocked them: ${redact(errorMessage(err))}`);
      }
      await this.options.onReleased?.(acquired).catch(() => undefined);
      return;
    }
    for (const s of acquired) this.acquiring.delete(s);
    if (this.client !== client || !this.registered) {
      // Stepped down meanwhile: the locks went with the session.
      await this.options.onReleased?.(acquired).catch(() => undefined);
      return;
    }
    for (const s of acquired) this.held.add(s);
    this.reportOwned();
    this.options.onNotify(); // claim from them straight away
    log.info(
      { acquired, quota: at.quota, lockMs: at.lockedAt - at.seenAt, destinationMs: Date.now() - at.lockedAt },
      `took shards ${formatShards(acquired)} (fair share ${at.quota}, now ${formatShards(this.held)})`,
    );
  }

  /** Unlock the shards left out of the claims since the previous verify. */
  private async unlockReleasing(client: pg.Client): Promise<void> {
    const shards = [...this.releasing];
    await client.query('SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext($1), $2 + s) FROM pg_catalog.unnest($3::int[]) AS s', [
      this.options.schema,
      SHARD_LOCK_BASE,
      shards,
    ]);
    for (const shard of shards) {
      this.held.delete(shard);
      this.releasing.delete(shard);
    }
    this.options.logger.info({ released: shards }, `released shards ${formatShards(shards)} (now ${formatShards(this.held) || 'none'})`);
    this.reportOwned();
    await this.options.onReleased?.(shards);
  }

  /** This database's relay locks of this schema: membership (shard null) and shards, with their holder's pid. */
  private async locks(client: pg.Client): Promise<Array<{ pid: number; shard: number | null }>> {
    const { rows } = await client.query<{ pid: number; shard: number | null }>({
      text: `SELECT l.pid, CASE WHEN l.objid = $2::int::oid THEN NULL ELSE (l.objid::bigint - $3::bigint)::int END AS shard
               FROM pg_catalog.pg_locks l
              WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
                AND l.classid = pg_catalog.hashtext($1)::oid
                AND (l.objid = $2::int::oid OR l.objid::bigint BETWEEN $3::bigint AND $3::bigint + $4::bigint - 1)`,
      values: [this.options.schema, MEMBER_LOCK_KEY, SHARD_LOCK_BASE, this.shardCount],
      query_timeout: this.options.checkTimeoutMs ?? 5000,
    } as pg.QueryConfig);
    return rows;
  }

  private async connect(): Promise<pg.Client> {
    const { client, socket } = await openLockConnection({
      databaseUrl: this.options.databaseUrl,
      applicationName: `${SHARDS_APPLICATION_NAME} ${this.options.instanceId}`,
      schema: this.options.schema,
      logger: this.options.logger,
      what: 'shard lock',
      onNotify: () => this.options.onNotify(),
      onLost: (lost) => {
        if (this.client !== lost) return;
        if (this.held.size > 0) this.options.logger.warn({ shards: [...this.held] }, 'shard lock connection lost; giving up the shards');
        this.client = null;
        this.socket = null;
        this.registered = false;
        clearInterval(this.timer);
        this.held.clear();
        this.acquiring.clear();
        this.surplus.clear();
        this.releasing.clear();
        this.reportOwned();
      },
      ...(this.options.keepAliveMs !== undefined ? { keepAliveMs: this.options.keepAliveMs } : {}),
    });
    this.client = client;
    this.socket = socket;
    return client;
  }
}

/** One running sharded relay instance, as the lock table shows it. */
export interface ShardOwner {
  /** Backend pid of its lock connection. */
  pid: number;
  /** Its OUTBOX_INSTANCE_ID (from the lock connection's application_name). */
  instance: string;
  shards: number[];
}

export interface ShardOwnersReport {
  /** Shards of the delivery queue; null before migration 0006. */
  shardCount: number | null;
  owners: ShardOwner[];
  /** Shards nobody holds (being handed over, or no sharded relay running). */
  unowned: number[];
}

/** Which running instance owns which shards of `schema`'s delivery queue (for `outbox status` and tests). */
export async function readShardOwners(db: pg.ClientBase | pg.Pool, schema: string): Promise<ShardOwnersReport> {
  const { rows: sharding } = await db.query<{ table: string | null }>(`SELECT pg_catalog.to_regclass($1)::text AS table`, [`${ident(schema)}.outbox_sharding`]);
  if (sharding[0]?.table == null) return { shardCount: null, owners: [], unowned: [] };
  const { rows: count } = await db.query<{ n: number }>(`SELECT s.shard_count AS n FROM ${ident(schema)}.outbox_sharding s`);
  const shardCount = count[0]?.n ?? 0;
  const { rows } = await db.query<{ pid: number; app: string | null; shard: number | null }>(
    `SELECT l.pid, a.application_name AS app, CASE WHEN l.objid = $2::int::oid THEN NULL ELSE (l.objid::bigint - $3::bigint)::int END AS shard
       FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
        AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
        AND l.classid = pg_catalog.hashtext($1)::oid
        AND (l.objid = $2::int::oid OR l.objid::bigint BETWEEN $3::bigint AND $3::bigint + $4::bigint - 1)`,
    [schema, MEMBER_LOCK_KEY, SHARD_LOCK_BASE, shardCount],
  );
  const byPid = new Map<number, ShardOwner>();
  for (const r of rows) {
    const owner = byPid.get(r.pid) ?? { pid: r.pid, instance: (r.app ?? '').replace(`${SHARDS_APPLICATION_NAME} `, '') || `pid ${r.pid}`, shards: [] };
    if (r.shard !== null) owner.shards.push(r.shard);
    byPid.set(r.pid, owner);
  }
  const owners = [...byPid.values()].sort((a, b) => a.instance.localeCompare(b.instance) || a.pid - b.pid);
  for (const o of owners) o.shards.sort((a, b) => a - b);
  const held = new Set(owners.flatMap((o) => o.shards));
  return { shardCount, owners, unowned: Array.from({ length: shardCount }, (_, i) => i).filter((s) => !held.has(s)) };
}
