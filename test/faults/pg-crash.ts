import pg from 'pg';
import { builtInProjections, rebuildProjection, type RebuildResult } from '../../projector';
import { loadCatalog } from '../../schemas/catalog';
import { appendEvents, withTransaction, type NewEvent } from '../../writer';
import { uniqueName } from '../support/isolation';
import { privatePostgres, type PrivatePostgres } from '../support/private-postgres';
import type { Child } from '../support/processes';
import {
  deliveredCount,
  envAs,
  kafkaOf,
  logger,
  scenarioConfig,
  scenarioEnv,
  ROLES,
  seedUsers,
  sleep,
  spawnProjector,
  spawnRelay,
  supervise,
  verifyAndPrint,
  ZERO_EXCEPT_COPIES,
} from './support';

/**
 * PostgreSQL crash and restart under load, on a private cluster (test/support/private-postgres.ts; the
 * machine's server is never touched): writers commit a steady stream of events, the relay and the
 * projector run as supervised child processes, and PostgreSQL is stopped with `pg_ctl stop -m immediate`
 * (every backend gone at once, no checkpoint: WAL replay at the next start) `crashes` times, down for
 * `downMs` each time. With `rebuildSwap`, a rebuild of the `users` projection runs as well and PostgreSQL
 * is crashed the moment it starts its swap; the rebuild is then run again, as an operator would.
 *
 * Writers see errors while the server is down and retry the transaction; the ledger is what committed
 * (a COMMIT cut by the crash may or may not have committed; a retry then commits the events again, as new
 * events, and both are in the ledger). Recovery is timed from the moment the server accepts connections
 * again: until a writer commits, until the relay marks a new delivery, until the projector applies a new
 * event. Neither process may exit.
 */
export interface PgCrashOptions {
  scenario: string;
  crashes: number;
  downMs: number;
  ratePerSec: number;
  /** Seconds of steady load between crashes. */
  steadyMs: number;
  rebuildSwap?: boolean;
}

interface Writers {
  stop(): Promise<void>;
  /** Transactions acknowledged (COMMIT returned) × events each. */
  acknowledged(): number;
  /** Events whose transaction was attempted (acknowledged or not). */
  attempted(): number;
  failedAttempts(): number;
  lastCommitAt(): number;
}

/** `writers` connections appending UserEmailChanged events at `ratePerSec`, retrying a failed transaction until stopped. */
function retryingWriters(pool: pg.Pool, o: { writers: number; ratePerSec: number; aggregates: number; perTx: number; prefix: string }): Writers {
  let stopped = false;
  let next = 0;
  let acknowledged = 0;
  let attempted = 0;
  let failed = 0;
  let lastCommit = Date.now();
  const started = Date.now();
  const writer = async (w: number): Promise<void> => {
    while (!stopped) {
      const start = next;
      next += o.perTx;
      const events: NewEvent[] = [];
      for (let i = start; i < start + o.perTx; i++) {
        events.push({
          aggregateType: 'user',
          aggregateId: `${o.prefix}${(i * 7919 + w) % o.aggregates}`,
          eventType: 'UserEmailChanged',
          schemaVersion: 1,
          payload: { email: `user${i}@example.com` },
          actorId: `writer:${w}`,
          traceId: i.toString(16).padStart(32, '0'),
          correlationId: `req-${i}`,
        });
      }
      for (;;) {
        attempted += events.length;
        try {
          await withTransaction(pool, (client) => appendEvents(client, events));
          acknowledged += events.length;
          lastCommit = Date.now();
          break;
        } catch {
          failed += 1;
          if (stopped) return;
          await sleep(200);
        }
      }
      const wait = started + (acknowledged / o.ratePerSec) * 1000 - Date.now();
      if (wait > 0) await sleep(wait);
    }
  };
  const running = Promise.all(Array.from({ length: o.writers }, (_, w) => writer(w)));
  return {
    async stop() {
      stopped = true;
      await running;
    },
    acknowledged: () => acknowledged,
    attempted: () => attempted,
    failedAttempts: () => failed,
    lastCommitAt: () => lastCommit,
  };
}

async function appliedCount(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_log');
  return Number(rows[0]!.n);
}

/** Poll `read` (errors count as "not yet") until it returns more than `above`; ms from `from`, or undefined after `timeoutMs`. */
async function msUntilAbove(read: () => Promise<number>, above: number, from: number, timeoutMs = 120_000): Promise<number | undefined> {
  while (Date.now() - from < timeoutMs) {
    const n = await read().catch(() => -1);
    if (n > above) return Date.now() - from;
    await sleep(100);
  }
  return undefined;
}

interface Recovery {
  stop_ms: number;
  down_ms: number;
  /** pg_ctl start -w: crash recovery (WAL replay) until connections are accepted. */
  restart_ready_ms: number;
  /** From ready: a writer's next COMMIT; the relay's next marked delivery; the projector's next applied event. */
  writes_resumed_ms: number | undefined;
  relay_resumed_ms: number | undefined;
  projector_resumed_ms: number | undefined;
}

/**
 * Crash (or await a crash already under way), wait `downMs`, restart, and time each component's recovery.
 * The counts that must grow are read before the crash, or, for a crash already under way, as soon as the
 * server is back (the first delivery or apply after that then marks the recovery).
 */
async function crashAndRecover(pgc: PrivatePostgres, pool: pg.Pool, writers: Writers, downMs: number, crash?: Promise<{ stopMs: number }>): Promise<Recovery> {
  let delivered = crash ? undefined : await deliveredCount(pool);
  let applied = crash ? undefined : await appliedCount(pool);
  const { stopMs } = await (crash ?? pgc.crash());
  await sleep(downMs);
  const { readyMs } = await pgc.start();
  const ready = Date.now();
  delivered ??= await deliveredCount(pool);
  applied ??= await appliedCount(pool);
  const writes = (async () => {
    while (writers.lastCommitAt() < ready && Date.now() - ready < 120_000) await sleep(50);
    return writers.lastCommitAt() >= ready ? writers.lastCommitAt() - ready : undefined;
  })();
  const [writesMs, relayMs, projectorMs] = await Promise.all([
    writes,
    msUntilAbove(() => deliveredCount(pool), delivered, ready),
    msUntilAbove(() => appliedCount(pool), applied, ready),
  ]);
  return { stop_ms: stopMs, down_ms: downMs, restart_ready_ms: readyMs, writes_resumed_ms: writesMs, relay_resumed_ms: relayMs, projector_resumed_ms: projectorMs };
}

export async function pgCrashScenario(children: Child[], o: PgCrashOptions): Promise<void> {
  const failed = (): boolean => (globalThis as { __outboxTestFailed?: boolean }).__outboxTestFailed === true;
  const pgc = await privatePostgres(uniqueName('pgc'));
  const pool = new pg.Pool({ connectionString: pgc.url, max: 10 });
  // Connections die with the server: idle ones and checked-out ones alike must not raise an unhandled
  // 'error' event (as createPool in core/pg.ts does for the library's own pools); the query fails instead.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const topic = uniqueName('pgcrash');
  const env = scenarioEnv(pgc.url, topic);
  const aggregates = 150;
  const prefix = 'u';
  let relay: ReturnType<typeof supervise> | undefined;
  let projector: ReturnType<typeof supervise> | undefined;
  let writers: Writers | undefined;
  try {
    await seedUsers(pool, aggregates, prefix);
    const group = uniqueName('g');
    relay = supervise(() => spawnRelay(env, children, { waitLeader: false }));
    projector = supervise(() => spawnProjector(env, [topic], group, children));
    // Both at work before the first crash: the seeded users delivered and applied.
    expect(await msUntilAbove(() => deliveredCount(pool), 0, Date.now(), 180_000)).toBeDefined();
    expect(await msUntilAbove(() => appliedCount(pool), 0, Date.now(), 180_000)).toBeDefined();
    writers = retryingWriters(pool, { writers: 3, ratePerSec: o.ratePerSec, aggregates, perTx: 4, prefix });
    const recoveries: Recovery[] = [];
    for (let i = 0; i < o.crashes; i++) {
      await sleep(o.steadyMs);
      recoveries.push(await crashAndRecover(pgc, pool, writers, o.downMs));
    }
    const rebuild: Record<string, unknown> = {};
    if (o.rebuildSwap) {
      await sleep(o.steadyMs);
      // As the projector's role, as an operator would run it (a rebuild under another role is refused).
      const config = scenarioConfig(envAs(env, ROLES.projector));
      const users = builtInProjections(config, { catalog: loadCatalog(), topics: [topic] }).find((p) => p.name === 'users')!;
      let crash: Promise<{ stopMs: number }> | undefined;
      let attempts = 0;
      let result: RebuildResult | undefined;
      const errors: string[] = [];
      while (!result && attempts < 4) {
        attempts += 1;
        try {
          result = await rebuildProjection({
            config,
            logger,
            projection: users,
            groupIdPrefix: uniqueName('r'),
            // Generous: on a busy machine a 6 s session lapsed during catch-up and the rebuild never reached its swap.
            sessionTimeoutMs: 30_000,
            timeoutMs: 400_000,
            // The first attempt's swap is cut by the crash: PostgreSQL stops the moment the swap begins.
            onProgress: (p) => {
              if (p.phase === 'swapping' && !crash) crash = pgc.crash();
            },
          });
        } catch (err) {
          errors.push(String(err).slice(0, 300));
        }
        if (attempts === 1) {
          // The first attempt reached its swap (and the crash cut it), rather than failing on its own.
          expect({ crashedAtSwap: crash !== undefined, errors }).toMatchObject({ crashedAtSwap: true });
          recoveries.push(await crashAndRecover(pgc, pool, writers, o.downMs, crash));
        }
      }
      expect(result).toMatchObject({ projection: 'users', swapped: true });
      const live = await pool.query<{ live_generation: number }>(`SELECT live_generation FROM projector_projections WHERE projection = 'users'`);
      Object.assign(rebuild, {
        rebuild_attempts: attempts,
        rebuild_first_attempt_failed: errors.length > 0,
        rebuild_errors: errors,
        rebuild_generation: result?.generation,
        live_generation: live.rows[0]?.live_generation,
      });
      expect(live.rows[0]?.live_generation).toBe(result?.generation);
    }
    await sleep(2000);
    await writers.stop();
    const acknowledged = writers.acknowledged();
    const attempted = writers.attempted();
    const report = await verifyAndPrint(
      o.scenario,
      pool,
      kafkaOf(env),
      [topic],
      { projections: true },
      {
        crashes: recoveries.length,
        recoveries,
        writes_acknowledged: acknowledged,
        writer_failed_attempts: writers.failedAttempts(),
        ...rebuild,
        relay_process_exits: relay.exits(),
        projector_process_exits: projector.exits(),
        ...(relay.exits() + projector.exits() > 0 ? { exit_reasons: [...relay.reasons, ...projector.reasons] } : {}),
      },
    );
    // Every acknowledged commit is in the ledger; a COMMIT cut by a crash may or may not be.
    expect(report.committed).toBeGreaterThanOrEqual(acknowledged + aggregates);
    expect(report.committed).toBeLessThanOrEqual(attempted + aggregates);
    expect(acknowledged).toBeGreaterThan(0);
    expect(report).toMatchObject(ZERO_EXCEPT_COPIES);
    // Each crash hit a working pipeline that came back: writes, deliveries and applies resumed.
    for (const r of recoveries) expect(r).toMatchObject({ writes_resumed_ms: expect.any(Number), relay_resumed_ms: expect.any(Number), projector_resumed_ms: expect.any(Number) });
    // A server crash is a lost connection to retry, not a reason to exit.
    expect({ relay: relay.exits(), projector: projector.exits() }).toEqual({ relay: 0, projector: 0 });
  } finally {
    await writers?.stop();
    await projector?.stop();
    await relay?.stop();
    await pool.end().catch(() => undefined);
    if (!(await pgc.running())) await pgc.start().catch(() => undefined);
    await pgc.destroy(failed());
  }
}
