/**
 * Shared pieces of the fault scenarios (issue 8): seeding users so the projector can fold them, the
 * relay and projector as child processes (killable) or in-process, a naive id poller (the control that
 * must lose late commits), latency sampling, and the final verification + one JSON figures line.
 */
import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import { loadConfig, type OutboxConfig } from '../../core/config';
import { createKafka } from '../../core/kafka';
import { createLogger, type Logger } from '../../core/logger';
import { startProjector, type RunningProjector } from '../../projector';
import { appendEvents, withTransaction, type NewEvent } from '../../writer';
import { verifyLedger, printFigures, type LedgerReport, type VerifyOptions } from '../support/ledger-verifier';
import { createTopics } from '../support/kafka';
import { spawnTs, type Child } from '../support/processes';
import { relayEnv } from '../support/relay-env';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
export const logger: Logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Register users `<prefix>0..<prefix>(n-1)` (UserRegistered, version 1) so workload events fold. */
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

/** A relay child process (test/support/relay-process.ts); resolves once it is the leader unless `standby`. */
export async function spawnRelay(env: NodeJS.ProcessEnv, children: Child[], options: { waitLeader?: boolean } = {}): Promise<Child> {
  const c = spawnTs('test/support/relay-process.ts', env);
  children.push(c);
  await c.waitFor(options.waitLeader === false ? /relay started/ : /leader/, 60_000);
  return c;
}

/** A projector child process (projector/projector-process.ts, audit_log + users); resolves when ready. */
export async function spawnProjector(env: NodeJS.ProcessEnv, topics: string[], groupIdPrefix: string, children: Child[]): Promise<Child> {
  await ensureUserTopic(env);
  const c = spawnTs('projector/projector-process.ts', env, [JSON.stringify({ topics, groupIdPrefix, sessionTimeoutMs: 6000 })]);
  children.push(c);
  await c.waitFor(/ready/, 90_000);
  return c;
}

/** The projector in this process (for scenarios that do not kill it); it reads the topic of `user`. */
export async function inProcessProjector(env: NodeJS.ProcessEnv, groupIdPrefix: string): Promise<RunningProjector> {
  await ensureUserTopic(env);
  return startProjector({ config: scenarioConfig(env), logger, groupIdPrefix, sessionTimeoutMs: 6000 });
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
  const { lostEventIds, reorderedAggregates, mismatchedUsers, ...figures } = report;
  printFigures(scenario, { system: 'kafka-outbox', ...figures, ...extra, lostEventIds, reorderedAggregates, mismatchedUsers });
  return report;
}

/** What every kafka-outbox scenario must show. */
export const ZERO = { lost: 0, reordered: 0, unexpected: 0, double_applied: 0, not_applied: 0, projection_mismatch: 0 };

/** Delivered-count snapshot (for reporting where kills happened). */
export async function deliveredCount(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox_delivery WHERE delivered_at IS NOT NULL');
  return Number(rows[0]!.n);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
