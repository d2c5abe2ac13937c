import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { readinessChecks, startAdminServer, type AdminServer } from '../../core/admin-server';
import type { OutboxConfig } from '../../core/config';
import { isOutboxError, OutboxError } from '../../core/errors';
import { createKafka } from '../../core/kafka';
import type { Logger } from '../../core/logger';
import { createMetrics, type OutboxMetrics } from '../../core/metrics';
import { connectClient, createPool, ident } from '../../core/pg';
import { sleep } from '../../core/retry';
import { migrate } from '../../infra/migrate';
import { pgError } from '../../cli/connections';
import { newRequest, SERVICE_TABLE, UsersService, type ServiceResponse } from './service';
import { formatTable, UsageError, type Command, type CommandContext } from '../../cli/framework';
import { preflight, relayMetricsObserver } from '../../cli/commands/run';

/**
 * `outbox demo`: the whole pipeline on the local stack in one process. It uses its own database
 * (`--database`, default `outbox_demo`, created if missing and kept between runs), its own topic
 * (`<database>.user.events`) and consumer groups, and fresh user ids per run, so it can be re-run and
 * never touches what the tests or a real deployment use. It migrates, starts a relay and a projector
 * (admin ports printed), runs the users-service workload through the TypeScript API, waits until every
 * event is published and projected, and prints the counts, the `users` read model and one user's audit
 * history with the verified hash chain. Relay and projector are stopped at the end; the stack keeps running.
 */

const DEFAULT_DATABASE = 'outbox_demo';
const DB_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

interface DemoUser {
  id: string;
  key: string;
  email: string;
  name: string;
}

interface WorkloadStep {
  what: string;
  userId: string;
  request: { actorId: string; traceId: string; correlationId: string };
  ifMatch?: number;
  response: ServiceResponse;
}

interface LateTransaction {
  userId: string;
  outboxId: string;
  eventId: string;
  heldMs: number;
  /** Events of other transactions that committed while this one was open (and their state then). */
  committedMeanwhile: Array<{ outboxId: string; userId: string; deliveredBeforeLateCommit: boolean }>;
}

interface UserRow {
  user_id: string;
  email: string;
  email_verified: boolean;
  display_name: string;
  active: boolean;
  deactivation_reason: string | null;
  version: string;
  events_applied: number;
}

interface AuditRow {
  aggregate_version: string;
  occurred_at: Date;
  event_type: string;
  schema_version: number;
  writer_schema_version: number;
  actor_id: string | null;
  trace_id: string | null;
  correlation_id: string | null;
  event_id: string;
  chain_status: string;
  chain_problem: string | null;
  hash: string;
  topic: string;
  kafka_partition: number;
  kafka_offset: string;
}

function port(flag: string, value: string | boolean | undefined, fallback: number): number {
  if (typeof value !== 'string') return fallback;
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) throw new UsageError(`--${flag} must be a port number 0..65535, got "${value}"`, 'demo');
  return Number(value);
}

function seconds(flag: string, value: string | boolean | undefined, fallback: number): number {
  if (typeof value !== 'string') return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 60) throw new UsageError(`--${flag} must be a number of seconds 0..60, got "${value}"`, 'demo');
  return n;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Create the demo database on the DATABASE_URL server unless it exists (concurrent runs tolerated); `reset` drops it first. */
async function ensureDatabase(config: OutboxConfig, logger: Logger, name: string, reset = false): Promise<boolean> {
  const client = await connectClient(config.databaseUrl, logger, 'outbox-demo').catch((err: unknown) => {
    throw pgError(err, config, 'connection');
  });
  try {
    if (reset)
      await client.query(`DROP DATABASE IF EXISTS ${ident(name)} WITH (FORCE)`).catch((err: unknown) => {
        throw pgError(err, config, `DROP DATABASE ${name}`);
      });
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount) return false;
    try {
      await client.query(`CREATE DATABASE ${ident(name)}`);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === '42P04') return false; // created by a concurrent run
      throw pgError(err, config, `CREATE DATABASE ${name} (the DATABASE_URL user needs CREATEDB)`);
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Why the kept demo database no longer matches Kafka (undefined when it does): it was used with other
 * brokers, or its projector checkpoints point past the end of the topic (the Kafka data was reset, e.g.
 * a new stack). Then the projector would wait for offsets that never come, so the database is reset.
 */
async function staleReason(config: OutboxConfig, logger: Logger, topic: string): Promise<string | undefined> {
  const client = await connectClient(config.databaseUrl, logger, 'outbox-demo').catch((err: unknown) => {
    throw pgError(err, config, 'connection');
  });
  const s = ident(config.schema);
  const r = ident(config.projector.schema);
  let checkpoints: Array<{ partition: number; last_offset: string }>;
  try {
    const meta = await client.query<{ brokers: string }>(`SELECT brokers FROM ${s}.demo_runs ORDER BY started_at DESC LIMIT 1`).catch(() => ({ rows: [] }));
    const last = meta.rows[0]?.brokers;
    if (last !== undefined && last !== config.kafka.brokers.join(',')) return `it was last used with the brokers ${last}`;
    // The projector runs as its own role now: a read model built by a projector that ran as another user
    // (an earlier demo) belongs to that user, and the projector's role could not repoint its views.
    const foreign = await client
      .query<{ pg_schema: string; owner: string }>(
        `SELECT g.pg_schema, pg_get_userbyid(n.nspowner) AS owner FROM ${r}.projector_generations g JOIN pg_namespace n ON n.nspname = g.pg_schema
          WHERE g.status = 'live' AND pg_get_userbyid(n.nspowner) <> $1 LIMIT 1`,
        [DEMO_ROLES.projector],
      )
      .catch(() => ({ rows: [] as Array<{ pg_schema: string; owner: string }> }));
    const f = foreign.rows[0];
    if (f) return `its read model ${f.pg_schema} belongs to ${f.owner}, not to the projector's role ${DEMO_ROLES.projector}`;
    checkpoints = (
      await client
        .query<{ partition: number; last_offset: string }>(
          `SELECT f.partition, f.last_offset::text FROM ${r}.projector_offsets f
             JOIN ${r}.projector_projections pp ON pp.projection = f.projection AND pp.live_generation = f.generation
            WHERE f.topic = $1 AND f.last_offset >= 0`,
          [topic],
        )
        .catch(() => ({ rows: [] as Array<{ partition: number; last_offset: string }> }))
    ).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
  if (checkpoints.length === 0) return undefined;
  const admin = createKafka(config.kafka, logger, 'demo-check').admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic)) return `its projector checkpoints name the topic ${topic}, which Kafka no longer has`;
    const ends = new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]));
    const past = checkpoints.find((c) => BigInt(c.last_offset) >= (ends.get(c.partition) ?? 0n));
    return past ? `its projector checkpoint ${topic}/${past.partition}@${past.last_offset} is past the end of the topic (the Kafka data was reset)` : undefined;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Create the demo topic (as the relay would) so that the projector never subscribes to a missing one, and
 * wait (up to 30 s) until the broker's group coordinator and producer-id allocation answer: a stack that
 * has just started is still loading them, and the projector's consumers would log errors meanwhile.
 */
async function prepareKafka(config: OutboxConfig, logger: Logger, topic: string, groupId: string): Promise<void> {
  const kafka = createKafka(config.kafka, logger, 'demo-setup', { retries: 1 });
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(topic)) {
      await admin.createTopics({ topics: [{ topic, numPartitions: config.relay.topicPartitions }], waitForLeaders: true }).catch((err: unknown) => {
        if (!/already exists/i.test(String((err as Error).message))) throw err;
      });
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
      const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, retry: { retries: 1 } });
      const ok = await admin
        .describeGroups([groupId])
        .then(() => producer.connect())
        .then(
          () => true,
          () => false,
        );
      await producer.disconnect().catch(() => undefined);
      if (ok || Date.now() > deadline) return;
      await sleep(500);
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** The admin server on `port`, or on a free port when that one is taken (printed either way). */
async function adminServer(port: number, host: string, metrics: OutboxMetrics, pool: pg.Pool, config: OutboxConfig, ctx: CommandContext): Promise<AdminServer> {
  const options = {
    host,
    registry: metrics.registry,
    readiness: readinessChecks({ pool, kafka: config.kafka, registry: config.registry, logger: ctx.libLogger }),
    logger: ctx.libLogger,
  };
  try {
    return await startAdminServer({ ...options, port });
  } catch (err) {
    if (port === 0 || !isOutboxError(err, 'CONFIG_INVALID')) throw err;
    return startAdminServer({ ...options, port: 0 });
  }
}

/** Poll `check` until it holds; a timeout fails the demo (publishing: Kafka is the usual suspect). */
async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new OutboxError(
        /publish/.test(what) ? 'KAFKA_UNAVAILABLE' : 'INTERNAL',
        `demo: ${what} did not happen within ${Math.round(timeoutMs / 1000)}s (run with --verbose to see the relay and projector logs)`,
      );
    await sleep(200);
  }
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'Run the users-service demo on the local stack (migrate, relay, projector, workload, audit)',
  description: [
    'Uses its own database (--database, created if missing and kept between runs) on the DATABASE_URL',
    'server, the topic <database>.user.events and fresh user ids per run: re-runnable, and it never',
    'touches the tests or a real deployment. Relay and projector run in this process with admin ports',
    '(/metrics, /healthz, /readyz) and are stopped at the end; the stack keeps running.',
  ].join('\n'),
  flags: {
    database: { type: 'string', placeholder: 'name', description: 'Database of the demo on the DATABASE_URL server', default: DEFAULT_DATABASE },
    'relay-port': { type: 'string', placeholder: 'port', description: 'Admin port of the relay (a free one if taken; 0 = any)', default: '9464' },
    'projector-port': { type: 'string', placeholder: 'port', description: 'Admin port of the projector (a free one if taken; 0 = any)', default: '9465' },
    hold: { type: 'string', placeholder: 'seconds', description: 'How long the late transaction stays open', default: '3' },
    linger: { type: 'string', placeholder: 'seconds', description: 'Keep relay and projector (and their admin ports) up this long after the summary', default: '0' },
  },
  needs: { database: true, kafka: true, registry: true },
  async run(ctx) {
    const started = Date.now();
    const { json, out } = ctx;
    const say = (text = ''): void => {
      if (!json) out.line(text);
    };
    const database = String(ctx.flags.database);
    if (!DB_NAME.test(database)) throw new UsageError(`--database must be a lower-case PostgreSQL name ([a-z_][a-z0-9_]*), got "${database}"`, 'demo');
    const relayPort = port('relay-port', ctx.flags['relay-port'], 9464);
    const projectorPort = port('projector-port', ctx.flags['projector-port'], 9465);
    const holdMs = Math.round(seconds('hold', ctx.flags.hold, 3) * 1000);
    const lingerMs = Math.round(seconds('linger', ctx.flags.linger, 0) * 1000);
    const host = ctx.config.adminHost ?? '127.0.0.1';
    const logger = ctx.logger.child({ component: 'demo' });

    // 0. The servers answer (one clear line naming the one that does not).
    const probe = createPool(ctx.config.databaseUrl, ctx.libLogger, { max: 1, applicationName: 'outbox-demo' });
    try {
      await preflight(ctx, probe);
    } finally {
      await probe.end().catch(() => undefined);
    }

    const run = randomBytes(3).toString('hex');
    const topic = `${database}.user.events`;
    let created = await ensureDatabase(ctx.config, ctx.libLogger, database);
    const config: OutboxConfig = {
      ...ctx.config,
      databaseUrl: withDatabase(ctx.config.databaseUrl, database),
      kafka: { ...ctx.config.kafka, clientId: `outbox-demo-${database}` },
      relay: {
        ...ctx.config.relay,
        topicMap: { ...ctx.config.relay.topicMap, user: topic },
        topicSuffix: `.${database}.events`,
        pollIntervalMs: Math.min(ctx.config.relay.pollIntervalMs, 250),
        instanceId: `demo-${run}`,
      },
    };
    const target = (() => {
      const u = new URL(config.databaseUrl);
      return `${u.hostname}:${u.port || '5432'}/${database}`;
    })();

    say(`kafka-outbox demo — run ${run}`);
    const stale = created ? undefined : await staleReason(config, ctx.libLogger, topic);
    if (stale) {
      say(`  database   ${target}: reset, because ${stale}`);
      created = await ensureDatabase(ctx.config, ctx.libLogger, database, true);
    }
    say(`  database   ${target} (${created ? 'created' : 'existing'}; the demo's own, kept between runs)`);
    say(`  topic      ${topic}`);

    // 1. Migrate.
    const applied = await (async () => {
      const c = await connectClient(config.databaseUrl, ctx.libLogger, 'outbox-demo').catch((err: unknown) => {
        throw pgError(err, config, 'connection');
      });
      try {
        return await migrate(c, { schema: config.schema, projectorSchema: config.projector.schema, logger: ctx.libLogger });
      } catch (err) {
        throw pgError(err, config, 'migration');
      } finally {
        await c.end().catch(() => undefined);
      }
    })();
    say(`  migrate    ${applied.length === 0 ? 'up to date' : `applied ${applied.join(', ')}`}`);
    await prepareKafka(config, ctx.libLogger, topic, `${config.kafka.clientId}.projector.audit_log`);

    // kafkajs warns once per producer about its v2 default partitioner; the relay sets it explicitly.
    process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
    const { startRelay } = require('../../relay/index') as typeof import('../../relay/index');
    const { startProjector } = require('../../projector/index') as typeof import('../../projector/index');
    const { verifyChain } = require('../../writer/index') as typeof import('../../writer/index');

    // The demo's own login (the migrating one) only sets up and observes; the service writes as the
    // application's role, the relay and the projector run as theirs (docs/security.md).
    const pool = createPool(config.databaseUrl, ctx.libLogger, { max: 6, applicationName: 'outbox-demo' });
    const urls = await roleUrls(pool, config.databaseUrl);
    if (!urls.asRoles) say(`  roles      the DATABASE_URL user cannot act as ${Object.values(DEMO_ROLES).join(', ')}: everything runs as that user`);
    const appPool = createPool(urls.app, ctx.libLogger, { max: 4, applicationName: 'outbox-demo-service' });
    const relayPool = createPool(urls.relay, ctx.libLogger, { max: 1, applicationName: 'outbox-demo-relay-metrics' });
    const relayConfig: OutboxConfig = { ...config, databaseUrl: urls.relay };
    const relayMetrics = createMetrics({ labels: { component: 'relay' }, query: (sql, params) => relayPool.query(sql, params), schema: config.schema, logger });
    const projectorMetrics = createMetrics({ labels: { component: 'projector' }, logger });
    const servers: AdminServer[] = [];
    let relay: { stop(): Promise<void> } | undefined;
    let projector: { stop(): Promise<void> } | undefined;
    const s = ident(config.schema);
    const r = ident(config.projector.schema);
    try {
      // 2. Relay and projector, in this process, each with its admin port.
      const relayAdmin = await adminServer(relayPort, host, relayMetrics, pool, config, ctx);
      servers.push(relayAdmin);
      const projectorAdmin = await adminServer(projectorPort, host, projectorMetrics, pool, config, ctx);
      servers.push(projectorAdmin);
      const url = (p: number): string => `http://${host.includes(':') ? `[${host}]` : host}:${p}`;
      relay = startRelay({ config: relayConfig, logger: ctx.logger.child({ component: 'relay' }), observer: relayMetricsObserver(relayMetrics) });
      // A stack that has just started may still be electing coordinators: retry the projector's start-up a few times.
      for (let attempt = 1; ; attempt++) {
        try {
          projector = await startProjector({
            config,
            databaseUrl: urls.projector,
            logger: ctx.logger.child({ component: 'projector' }),
            metrics: projectorMetrics,
            groupIdPrefix: `${config.kafka.clientId}.projector`,
          });
          break;
        } catch (err) {
          if (attempt >= 5 || isOutboxError(err, 'DB_REJECTED')) throw err;
          logger.warn({ err, attempt }, 'projector start-up failed, retrying');
          await sleep(1000 * attempt);
        }
      }
      say(`  relay      running, admin ${url(relayAdmin.port)}/metrics  /healthz  /readyz`);
      say(`  projector  running, admin ${url(projectorAdmin.port)}/metrics  /healthz  /readyz`);

      // 3. The workload, through the TypeScript API (withTransaction + appendEvents).
      // The service's own state table is created by the demo's login and written by the application's role.
      await new UsersService({ pool, schema: config.schema }).init();
      if (urls.asRoles) await pool.query(`GRANT SELECT, INSERT, UPDATE ON ${s}.${ident(SERVICE_TABLE)} TO ${ident(DEMO_ROLES.app)}`);
      const service = new UsersService({ pool: appPool, schema: config.schema });
      await pool.query(
        `CREATE TABLE IF NOT EXISTS ${s}.demo_runs (run text PRIMARY KEY, brokers text NOT NULL, topic text NOT NULL, started_at timestamptz NOT NULL DEFAULT now())`,
      );
      await pool.query(`INSERT INTO ${s}.demo_runs (run, brokers, topic) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [run, config.kafka.brokers.join(','), topic]);
      const users: DemoUser[] = [
        ['ada', 'ada@example.com', 'Ada Lovelace'],
        ['grace', 'grace@example.com', 'Grace Hopper'],
        ['alan', 'alan@example.com', 'Alan Turing'],
        ['edsger', 'edsger@example.com', 'Edsger Dijkstra'],
        ['barbara', 'barbara@example.com', 'Barbara Liskov'],
      ].map(([key, email, name]) => ({ key: key!, id: `${key}-${run}`, email: email!.replace('@', `+${run}@`), name: name! }));
      const byKey = (k: string): DemoUser => users.find((u) => u.key === k)!;
      const steps: WorkloadStep[] = [];
      let requestNo = 0;
      const req = (actorId: string) => newRequest(actorId, `req-${run}-${String(++requestNo).padStart(2, '0')}`);
      const step = async (
        what: string,
        userId: string,
        request: ReturnType<typeof req>,
        ifMatch: number | undefined,
        call: () => Promise<ServiceResponse>,
      ): Promise<ServiceResponse> => {
        const response = await call();
        steps.push({ what, userId, request, ...(ifMatch !== undefined ? { ifMatch } : {}), response });
        const answer = response.status === 412 ? `412 Precondition Failed, ETag "${response.etag}" (current version)` : `${response.status}, ETag "${response.etag}"`;
        say(`  ${what.padEnd(56)} → ${answer}`);
        return response;
      };

      say('');
      say('users service (each request: state row + event in one transaction; If-Match = expected version)');
      for (const u of users) {
        const r = req('service:signup');
        await step(`POST /users ${u.id} (${u.name})`, u.id, r, undefined, () => service.register(u.id, u.email, u.name, r));
      }
      // Two clients read grace at version 1; the first write wins, the second gets 412 and retries.
      const grace = byKey('grace');
      const a = req(`user:${grace.id}`);
      await step(`PUT /users/${grace.id}/email  If-Match "1" (client A)`, grace.id, a, 1, () => service.changeEmail(grace.id, `grace.hopper+${run}@navy.example`, 1, a));
      const b = req('user:support-7');
      const conflict = await step(`PUT /users/${grace.id}/email  If-Match "1" (client B)`, grace.id, b, 1, () =>
        service.changeEmail(grace.id, `g.hopper+${run}@example.org`, 1, b),
      );
      if (conflict.status !== 412) throw new OutboxError('INTERNAL', 'demo: the stale If-Match was not refused');
      const b2 = req('user:support-7');
      const retried = await step(`PUT /users/${grace.id}/email  If-Match "${conflict.etag}" (B retries)`, grace.id, b2, conflict.etag, () =>
        service.changeEmail(grace.id, `g.hopper+${run}@example.org`, conflict.etag, b2),
      );
      const rn = req(`user:${grace.id}`);
      await step(`PUT /users/${grace.id}/name   If-Match "${retried.etag}"`, grace.id, rn, retried.etag, () =>
        service.rename(grace.id, 'Grace', 'Brewster Hopper', retried.etag, rn),
      );

      // One transaction stays open (a slow request) while others commit; it commits last and still arrives.
      const edsger = byKey('edsger');
      const lr = req(`user:${edsger.id}`);
      say(`  late transaction: PUT /users/${edsger.id}/email appended, held open ${(holdMs / 1000).toFixed(1)}s while others commit…`);
      const meanwhile: Array<{ outboxId: string; userId: string }> = [];
      const lateStart = Date.now();
      const late = await service.inTransaction(async (client) => {
        const r = await service.changeEmail(edsger.id, `e.w.dijkstra+${run}@example.nl`, 1, lr, client);
        const gap = holdMs / 4;
        await sleep(gap);
        const ada = byKey('ada');
        const r1 = req(`user:${ada.id}`);
        const x1 = await step(`  PUT /users/${ada.id}/email  If-Match "1"`, ada.id, r1, 1, () => service.changeEmail(ada.id, `ada.king+${run}@example.co.uk`, 1, r1));
        await sleep(gap);
        const barbara = byKey('barbara');
        const r2 = req(`user:${barbara.id}`);
        const x2 = await step(`  PUT /users/${barbara.id}/name  If-Match "1"`, barbara.id, r2, 1, () => service.rename(barbara.id, 'Barbara', 'Liskov', 1, r2));
        await sleep(gap);
        const alan = byKey('alan');
        const r3 = req('user:support-7');
        const x3 = await step(`  DELETE /users/${alan.id}  If-Match "1"`, alan.id, r3, 1, () => service.deactivate(alan.id, 'account closed at the user’s request', 1, r3));
        for (const [x, u] of [
          [x1, ada],
          [x2, barbara],
          [x3, alan],
        ] as const) {
          if (x.status !== 412) meanwhile.push({ outboxId: x.outboxId, userId: u.id });
        }
        await sleep(Math.max(0, holdMs - (Date.now() - lateStart)));
        // Give the relay a moment to publish what committed meanwhile, so the order is visible below.
        await waitUntil('publishing the events committed meanwhile', 15_000, async () => {
          const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.outbox_delivery WHERE id = ANY($1::bigint[]) AND delivered_at IS NOT NULL`, [
            meanwhile.map((m) => m.outboxId),
          ]);
          return Number(rows[0]?.n ?? 0) === meanwhile.length;
        });
        return r;
      });
      if (late.status === 412) throw new OutboxError('INTERNAL', 'demo: the late transaction unexpectedly conflicted');
      steps.push({ what: `PUT /users/${edsger.id}/email (late)`, userId: edsger.id, request: lr, ifMatch: 1, response: late });
      const heldMs = Date.now() - lateStart;
      say(
        `  late transaction committed after ${(heldMs / 1000).toFixed(1)}s: outbox id ${late.outboxId}, lower than the ids ${meanwhile.map((m) => m.outboxId).join(', ')} committed (and published) meanwhile`,
      );
      const lateTx: LateTransaction = {
        userId: edsger.id,
        outboxId: late.outboxId,
        eventId: late.eventId,
        heldMs,
        committedMeanwhile: meanwhile.map((m) => ({ ...m, deliveredBeforeLateCommit: true })),
      };

      // 4. Wait until every event of this run is published and projected.
      const ids = users.map((u) => u.id);
      const countWritten = async (): Promise<{ written: number; delivered: number }> => {
        const { rows } = await pool.query<{ written: string; delivered: string }>(
          `SELECT count(*) AS written, count(d.delivered_at) AS delivered
             FROM ${s}.outbox o LEFT JOIN ${s}.outbox_delivery d ON d.id = o.id
            WHERE o.aggregate_type = 'user' AND o.aggregate_id = ANY($1::text[])`,
          [ids],
        );
        return { written: Number(rows[0]?.written ?? 0), delivered: Number(rows[0]?.delivered ?? 0) };
      };
      const countProjected = async (): Promise<{ auditLog: number; users: number; usersCurrent: number }> => {
        const { rows } = await pool.query<{ audit: string; users: string; current: string }>(
          `SELECT (SELECT count(*) FROM ${r}.audit_log WHERE aggregate_type = 'user' AND aggregate_id = ANY($1::text[])) AS audit,
                  (SELECT count(*) FROM ${r}.users WHERE user_id = ANY($1::text[])) AS users,
                  (SELECT count(*) FROM ${r}.users u JOIN ${s}.outbox_aggregates h ON h.aggregate_type = 'user' AND h.aggregate_id = u.user_id
                    WHERE u.user_id = ANY($1::text[]) AND u.version = h.version) AS current`,
          [ids],
        );
        return { auditLog: Number(rows[0]?.audit ?? 0), users: Number(rows[0]?.users ?? 0), usersCurrent: Number(rows[0]?.current ?? 0) };
      };
      let written = await countWritten();
      await waitUntil('publishing every event of the run', 60_000, async () => {
        written = await countWritten();
        return written.delivered === written.written;
      });
      let projected = await countProjected();
      await waitUntil('projecting every event of the run', 60_000, async () => {
        projected = await countProjected();
        return projected.auditLog === written.written && projected.usersCurrent === users.length;
      });

      // Read the run's events back from the topic (Avro, decoded with the registry's schemas).
      const readBack = await readBackFromTopic(config, ctx.libLogger, topic, pool, ids, run);

      // 5. Report.
      const { rows: userRows } = await pool.query<UserRow>(
        `SELECT user_id, email, email_verified, display_name, active, deactivation_reason, version::text, events_applied FROM ${r}.users WHERE user_id = ANY($1::text[]) ORDER BY registered_at, user_id`,
        [ids],
      );
      const { rows: audit } = await pool.query<AuditRow>(
        `SELECT aggregate_version::text, occurred_at, event_type, schema_version, writer_schema_version, actor_id, trace_id, correlation_id, event_id,
                chain_status, chain_problem, encode(hash, 'hex') AS hash, topic, kafka_partition, kafka_offset::text
           FROM ${r}.audit_log WHERE aggregate_type = 'user' AND aggregate_id = $1 ORDER BY aggregate_version`,
        [grace.id],
      );
      const chains = await (async () => {
        const client = await pool.connect();
        try {
          const featured = await verifyChain(client, { schema: config.schema, aggregate: { type: 'user', id: grace.id } });
          const all = [];
          for (const id of ids) all.push(await verifyChain(client, { schema: config.schema, aggregate: { type: 'user', id } }));
          return { featured, allOk: all.every((r) => r.ok), allChecked: all.reduce((n, r) => n + r.checked, 0), firstBroken: all.find((r) => !r.ok)?.firstBroken };
        } finally {
          client.release();
        }
      })();
      const { rows: arrival } = await pool.query<{ chain_status: string; n: string }>(
        `SELECT chain_status, count(*) AS n FROM ${r}.audit_log WHERE aggregate_type = 'user' AND aggregate_id = ANY($1::text[]) GROUP BY chain_status`,
        [ids],
      );
      const onArrival = { ok: 0, broken: 0, unverified: 0 } as Record<string, number>;
      for (const r of arrival) onArrival[r.chain_status] = Number(r.n);
      const featuredArrivalOk = audit.length > 0 && audit.every((r) => r.chain_status === 'ok');
      const chainVerified =
        chains.featured.ok && chains.allOk && featuredArrivalOk && onArrival.broken === 0 && onArrival.unverified === 0 && chains.featured.checked === audit.length;
      const lateAudit = await pool.query<{ topic: string; kafka_partition: number; kafka_offset: string }>(
        `SELECT topic, kafka_partition, kafka_offset::text FROM ${r}.audit_log WHERE event_id = $1`,
        [late.eventId],
      );
      const lateAt = lateAudit.rows[0];
      const lateReadBack = readBack.eventIds.has(late.eventId);
      const countsMatch = written.written === written.delivered && written.written === readBack.count && written.written === projected.auditLog;
      const elapsed = (Date.now() - started) / 1000;

      if (json) {
        out.json({
          run,
          database: target,
          topic,
          admin: { relay: relayAdmin.port, projector: projectorAdmin.port },
          counts: {
            written: written.written,
            published: { delivered: written.delivered, readBackFromTopic: readBack.count },
            projected: { auditLog: projected.auditLog, users: projected.users },
            match: countsMatch,
          },
          requests: steps.map((st) => ({ what: st.what, userId: st.userId, ...st.request, ifMatch: st.ifMatch ?? null, status: st.response.status, etag: st.response.etag })),
          conflict: { userId: grace.id, ifMatch: 1, status: conflict.status, currentVersion: conflict.etag },
          lateTransaction: { ...lateTx, published: lateReadBack, projected: lateAt ?? null },
          users: userRows.map((u) => ({ ...u, version: Number(u.version) })),
          audit: {
            aggregate: `user/${grace.id}`,
            events: audit.map((r) => ({ ...r, aggregate_version: Number(r.aggregate_version) })),
            chain: { verified: chainVerified, writer: chains.featured, allAggregatesOfRun: { ok: chains.allOk, checked: chains.allChecked }, onArrival },
          },
          seconds: Number(elapsed.toFixed(1)),
        });
      } else {
        say('');
        say('results of this run');
        say(`  events written     ${written.written}  (outbox rows)`);
        say(`  events published   ${written.delivered}  (outbox_delivery delivered)  ·  ${readBack.count} read back from ${topic} (Avro via the registry)`);
        say(`  events projected   ${projected.auditLog}  (audit_log rows)  ·  ${projected.users} users rows`);
        say(`  written = published = projected: ${countsMatch ? 'yes' : 'NO'}`);
        say(
          `  late event         outbox id ${late.outboxId}, committed ${(heldMs / 1000).toFixed(1)}s late → ${lateReadBack ? 'on the topic' : 'NOT on the topic'}${lateAt ? ` (partition ${lateAt.kafka_partition}, offset ${lateAt.kafka_offset})` : ''}, ${lateAt ? 'projected' : 'NOT projected'}`,
        );
        say('');
        say("users read model (the projector's `users` view, this run)");
        say(
          formatTable(
            ['USER_ID', 'EMAIL', 'NAME', 'ACTIVE', 'VERSION', 'EVENTS'],
            userRows.map((u) => [
              u.user_id,
              `${u.email}${u.email_verified ? ' ✓' : ''}`,
              u.display_name,
              u.active ? 'yes' : `no (${u.deactivation_reason ?? ''})`,
              u.version,
              u.events_applied,
            ]),
          ),
        );
        say('');
        say(`audit history of user/${grace.id} (audit_log: who, from which request, when)`);
        say(
          formatTable(
            ['VERSION', 'OCCURRED_AT', 'EVENT', 'ACTOR', 'TRACE_ID', 'CORRELATION_ID', 'CHAIN', 'HASH'],
            audit.map((r) => [
              r.aggregate_version,
              r.occurred_at.toISOString(),
              `${r.event_type} v${r.writer_schema_version}`,
              r.actor_id,
              r.trace_id,
              r.correlation_id,
              r.chain_status,
              `${r.hash.slice(0, 12)}…`,
            ]),
          ),
        );
        if (chainVerified) {
          say(
            `chain verified: verifyChain recomputed ${chains.featured.checked} event(s) of user/${grace.id} from the outbox; ${audit.length} link(s) checked on arrival by audit_log: all ok` +
              ` (all ${ids.length} users of this run: ${chains.allChecked} event(s), ${onArrival.ok} ok on arrival)`,
          );
        } else {
          const b = chains.featured.firstBroken ?? chains.firstBroken;
          say(`chain NOT verified: ${b ? `user/${b.aggregateId} v${b.version}: ${b.reason}` : `on arrival ${JSON.stringify(onArrival)}`}`);
        }
        say('');
        say(`more: DATABASE_URL=${config.databaseUrl} node bin/outbox.js audit history user/${grace.id}`);
        say(
          `console: DATABASE_URL=${config.databaseUrl} OUTBOX_TOPIC_MAP=user=${topic} node bin/outbox.js console  → http://${ctx.config.console?.host ?? '127.0.0.1'}:${ctx.config.console?.port ?? 9470}`,
        );
        say(`demo finished in ${elapsed.toFixed(1)}s. The stack keeps running; stop it with: npm run stack:down`);
      }
      if (lingerMs > 0) {
        say(`relay and projector stay up ${(lingerMs / 1000).toFixed(0)}s more (admin ports above)…`);
        await sleep(lingerMs);
      }
      return countsMatch && chainVerified && lateReadBack && lateAt !== undefined ? 0 : 1;
    } finally {
      await Promise.allSettled([relay?.stop(), projector?.stop()]);
      await Promise.allSettled(servers.map((srv) => srv.close()));
      await Promise.allSettled([pool.end(), appPool.end(), relayPool.end()]);
      say('relay and projector stopped.');
    }
  },
};

/** The least-privilege roles `outbox migrate` creates (its defaults): the service's, the relay's, the projector's. */
const DEMO_ROLES = { app: 'outbox_app', relay: 'outbox_relay', projector: 'outbox_projector' } as const;

/** `url` whose sessions run as `role` (the `role` setting at connection start: that role's rights and no more). */
function asRole(url: string, role: string): string {
  const u = new URL(url);
  u.searchParams.set('options', [u.searchParams.get('options'), `-c role=${role}`].filter(Boolean).join(' '));
  return u.toString();
}

/**
 * Connection strings of the service, the relay and the projector: the demo's DATABASE_URL acting as each
 * least-privilege role, when its user may (a superuser, or a member of the roles); otherwise that URL.
 */
async function roleUrls(pool: pg.Pool, url: string): Promise<{ asRoles: boolean; app: string; relay: string; projector: string }> {
  const { rows } = await pool.query<{ ok: boolean }>(`SELECT bool_and(pg_has_role(current_user, r, 'MEMBER')) AS ok FROM unnest($1::text[]) AS r`, [Object.values(DEMO_ROLES)]);
  if (rows[0]?.ok !== true) return { asRoles: false, app: url, relay: url, projector: url };
  return { asRoles: true, app: asRole(url, DEMO_ROLES.app), relay: asRole(url, DEMO_ROLES.relay), projector: asRole(url, DEMO_ROLES.projector) };
}

/** Read the topic from the beginning with a throw-away consumer group; count this run's events (decoded). */
async function readBackFromTopic(
  config: OutboxConfig,
  logger: Logger,
  topic: string,
  pool: pg.Pool,
  ids: string[],
  run: string,
): Promise<{ count: number; eventIds: Set<string> }> {
  const { createEventDecoder } = require('../../schemas/decode-event') as typeof import('../../schemas/decode-event');
  const { loadCatalog } = require('../../schemas/catalog') as typeof import('../../schemas/catalog');
  const s = ident(config.schema);
  const { rows } = await pool.query<{ event_id: string }>(`SELECT event_id::text FROM ${s}.outbox WHERE aggregate_type = 'user' AND aggregate_id = ANY($1::text[])`, [ids]);
  const expected = new Set(rows.map((r) => r.event_id));
  const decoder = createEventDecoder({ registry: config.registry, catalog: loadCatalog(), logger });
  const kafka = createKafka(config.kafka, logger, 'readback');
  const groupId = `${config.kafka.clientId}.readback.${run}`;
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1000 });
  const seen = new Set<string>();
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (!message.value) return;
        const r = await decoder.decode(message.value);
        if (r.ok && expected.has(r.event.eventId)) seen.add(r.event.eventId);
        if (seen.size === expected.size) done();
      },
    });
    await Promise.race([finished, sleep(30_000)]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    const admin = kafka.admin();
    await admin
      .connect()
      .then(() => admin.deleteGroups([groupId]))
      .catch(() => undefined)
      .finally(() => admin.disconnect().catch(() => undefined));
  }
  return { count: seen.size, eventIds: seen };
}
