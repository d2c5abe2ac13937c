/**
 * Shared pieces of the fault scenarios: seeding users so the projector can fold them, the
 * relay and projector as child processes (killable) or in-process, a naive id poller (the control that
 * must lose late commits), latency sampling, and the final verification + one JSON figures line.
 */
import type { Kafka } from 'kafkajs';
import pg from 'pg';
import { loadConfig, type OutboxConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { createLogger, type Logger } from '../../core/logger';
import { startProjector, type RunningProjector } from '../../projector';
import { startRelay, type RelayHandle } from '../../relay';
import { appendEvents, withTransaction, type NewEvent } from '../../writer';
import { verifyLedger, printFigures, type LedgerReport, type VerifyOptions } from '../support/ledger-verifier';
import { createTopics } from '../support/kafka';
import { killHard, spawnTs, type Child } from '../support/processes';
import { relayEnv } from '../support/relay-env';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
export const logger: Logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Register users `<prefix>0..<prefix>(n-1)` (UserRegistered, version 1) so workload events fold; `pool`: the application's (appPool). */
export async function seedUsers(pool: pg.Pool, n: number, prefix = 'u'): Promise<void> {
  for (let i = 0; i < n; i += 200) {
    const events: NewEvent[] = [];
    for (let j = i; j < Math.min(n, i + 200); j++) {
      events.push({
        aggregateType: 'user',
        aggregateId: `${prefix}${j}`,
        eventType: 'UserRegistered',
        schemaVersion: 1,
        payload: { email: `${prefix}${j}@example.com`, name: `First${j} Last${j}` },
        actorId: 'seed',
        traceId: 'f'.repeat(32),
      });
    }
    await withTransaction(pool, (c) => appendEvents(c, events));
  }
}

/**
 * The least-privilege roles the migrations create (docs/security.md): the scenarios' writers, relay and
 * projector each connect with only their role's rights, as a deployment would.
 */
export const ROLES = { app: 'outbox_app', relay: 'outbox_relay', projector: 'outbox_projector' } as const;

/**
 * `url` whose sessions run as `role`: the connection's startup options set `role`, so every statement
 * of the session has that role's rights and no more (what a login that is a member of the role gets).
 * The test's own login stays the observer (verification, kills, checkpoints).
 */
export function asRole(url: string, role: string): string {
  const u = new URL(url);
  const options = [u.searchParams.get('options'), `-c role=${role}`].filter(Boolean).join(' ');
  u.searchParams.set('options', options);
  return u.toString();
}

/** `env` with its DATABASE_URL connecting as `role`. */
export function envAs(env: NodeJS.ProcessEnv, role: string): NodeJS.ProcessEnv {
  return { ...env, DATABASE_URL: asRole(env.DATABASE_URL!, role) };
}

/** A pool of the application's role (the writers): INSERT and SELECT on the history, nothing else. */
export function appPool(dbUrl: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: asRole(dbUrl, ROLES.app), max });
  pool.on('error', () => undefined);
  return pool;
}

/**
 * The projector's role may create a schema per generation: CREATE on the database, which a database
 * cloned from the template does not inherit (database privileges are not copied). Run as the test's login.
 */
export async function grantProjectorDatabase(dbUrl: string): Promise<void> {
  const c = new pg.Client({ connectionString: dbUrl });
  await c.connect();
  try {
    await c.query(`DO $$ BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO ${ROLES.projector}', current_database()); END $$`);
  } finally {
    await c.end();
  }
}

/** Environment of a scenario's relay/projector processes: the test database, `user` → topic. */
export function scenarioEnv(dbUrl: string, topic: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return relayEnv(dbUrl, topic, { OUTBOX_PROJECTOR_BATCH_SIZE: '250', ...extra });
}

export function scenarioConfig(env: NodeJS.ProcessEnv): OutboxConfig {
  return loadConfig(env, { database: true, kafka: true, registry: true });
}

export function kafkaOf(env: NodeJS.ProcessEnv): Kafka {
  return createKafka(scenarioConfig(env).kafka, logger);
}

/** A relay child process (test/support/relay-process.ts) as the relay's role; resolves once it is the leader unless `standby`. */
export async function spawnRelay(env: NodeJS.ProcessEnv, children: Child[], options: { waitLeader?: boolean } = {}): Promise<Child> {
  const c = spawnTs('test/support/relay-process.ts', envAs(env, ROLES.relay));
  children.push(c);
  await c.waitFor(options.waitLeader === false ? /relay started/ : /leader/, 60_000);
  return c;
}

/**
 * A projector child process (projector/projector-process.ts, audit_log + users) as the projector's role;
 * resolves when ready. With `adminPort` (0: any free port) it serves its own /metrics: projectorAdminPort(child).
 */
export async function spawnProjector(env: NodeJS.ProcessEnv, topics: string[], groupIdPrefix: string, children: Child[], options: { adminPort?: number } = {}): Promise<Child> {
  await ensureUserTopic(env);
  await grantProjectorDatabase(env.DATABASE_URL!);
  const args = { topics, groupIdPrefix, sessionTimeoutMs: 6000, ...(options.adminPort !== undefined ? { adminPort: options.adminPort } : {}) };
  const c = spawnTs('projector/projector-process.ts', envAs(env, ROLES.projector), [JSON.stringify(args)]);
  children.push(c);
  await c.waitFor(/ready/, 90_000);
  return c;
}

/** The admin port a projector child spawned with `adminPort` reported (its `admin <port>` line). */
export function projectorAdminPort(child: Child): number {
  const m = /^admin (\d+)$/m.exec(child.output());
  if (!m) throw new Error(`projector pid ${child.pid} reported no admin port`);
  return Number(m[1]);
}

/** The projector in this process (for scenarios that do not kill it), as the projector's role; it reads the topic of `user`. */
export async function inProcessProjector(env: NodeJS.ProcessEnv, groupIdPrefix: string): Promise<RunningProjector> {
  await ensureUserTopic(env);
  await grantProjectorDatabase(env.DATABASE_URL!);
  return startProjector({ config: scenarioConfig(envAs(env, ROLES.projector)), logger, groupIdPrefix, sessionTimeoutMs: 6000 });
}

/** The relay in this process (for scenarios that do not kill it), as the relay's role. */
export function inProcessRelay(env: NodeJS.ProcessEnv): RelayHandle {
  return startRelay({ config: scenarioConfig(envAs(env, ROLES.relay)), logger });
}

/** Create the scenario's `user` topic (as the relay would, 3 partitions) so a projector can subscribe first. */
export async function ensureUserTopic(env: NodeJS.ProcessEnv): Promise<void> {
  const config = scenarioConfig(env);
  await createTopics(kafkaOf(env), [config.relay.topicMap.user!], Number(env.OUTBOX_TOPIC_PARTITIONS ?? 3));
}

export { naivePoller } from '../support/naive-poller';

/** Committed events the naive poller never saw (its loss). */
export async function naiveLost(pool: pg.Pool, seen: Set<string>): Promise<number> {
  const { rows } = await pool.query<{ event_id: string }>('SELECT event_id::text FROM outbox');
  return rows.filter((r) => !seen.has(r.event_id)).length;
}

/** Verify ledger vs topics vs projections and print the scenario's figures line. */
export async function verifyAndPrint(
  scenario: string,
  pool: pg.Pool,
  kafka: Kafka,
  topics: string[],
  options: VerifyOptions,
  extra: Record<string, unknown> = {},
): Promise<LedgerReport> {
  const report = await verifyLedger(pool, kafka, topics, { timeoutMs: 180_000, ...options });
  const { lostEventIds, duplicateEventIds, reorderedAggregates, malformedEventIds, mismatchedUsers, ...figures } = report;
  printFigures(scenario, { system: 'kafka-outbox', ...figures, ...extra, lostEventIds, duplicateEventIds, reorderedAggregates, malformedEventIds, mismatchedUsers });
  return report;
}

/**
 * What a kafka-outbox scenario must show when nothing can make the relay publish an event twice
 * (fault-free runs, graceful stops, faults that do not touch the relay): not even a duplicate.
 */
export const ZERO = {
  lost: 0,
  duplicated: 0,
  divergent: 0,
  reordered: 0,
  malformed: 0,
  unexpected: 0,
  double_applied: 0,
  not_applied: 0,
  projection_mismatch: 0,
};

/**
 * What a scenario must show where a kill -9 (or a lost connection) can fall between the broker's ack and
 * the mark: copies are allowed and reported (`duplicated`), but every copy is the same record as the
 * event's first copy (`divergent` 0, so each duplicate carries an event_id already on the topic and
 * nothing else), in version order per copy (`reordered` 0), and applied once (`double_applied` 0).
 */
export const { duplicated: _copiesAllowed, ...ZERO_EXCEPT_COPIES } = ZERO;

/** Committed events not yet delivered nor parked: the relay's backlog (a kill with a backlog interrupts work). */
export async function backlogCount(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NULL AND parked_at IS NULL');
  return Number(rows[0]!.n);
}

/** Poll (every few ms, up to `timeoutMs`) until the relay has a backlog; returns it (0: none came). */
export async function awaitBacklog(pool: pg.Pool, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = await backlogCount(pool);
    if (n > 0 || Date.now() > deadline) return n;
    await sleep(5);
  }
}

/** Delivered-count snapshot (for reporting where kills happened). */
export async function deliveredCount(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NOT NULL');
  return Number(rows[0]!.n);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** Keep a process running: restart it whenever it exits, until stop(); counts the exits and keeps why (the last lines of output). */
export function supervise(start: () => Promise<Child>): { exits: () => number; reasons: string[]; stop(): Promise<void> } {
  let stopped = false;
  let exits = 0;
  const reasons: string[] = [];
  let current: Child | undefined;
  const loop = (async () => {
    while (!stopped) {
      try {
        current = await start();
      } catch (err) {
        // Died while starting (e.g. its connection terminated during start-up): an exit like any other.
        if (stopped) break;
        exits += 1;
        reasons.push(`failed to start: ${String(err).split('\n').slice(0, 3).join(' | ').slice(0, 600)}`);
        continue;
      }
      const code = await current.exited;
      if (!stopped) {
        exits += 1;
        const lines = current.output().trimEnd().split('\n');
        reasons.push(
          `exit ${code}: ${
            lines
              .filter((l) => /fatal|crash|Error|error/.test(l))
              .slice(-2)
              .join(' | ')
              .slice(0, 600) || lines.slice(-2).join(' | ')
          }`,
        );
      }
    }
  })();
  return {
    exits: () => exits,
    reasons,
    async stop() {
      stopped = true;
      if (current) await killHard(current);
      await loop.catch(() => undefined);
    },
  };
}
