import type { OutboxConfig } from '../../../core/config';
import { createKafka } from '../../../core/kafka';
import type { Logger } from '../../../core/logger';
import { connectClient, createPool, ident } from '../../../core/pg';
import { sleep } from '../../../core/retry';
import { migrate } from '../../../infra/migrate';
import { pgError } from '../../../cli/connections';
import { UsageError, type CommandContext } from '../../../cli/framework';
import { preflight } from '../../../cli/commands/run';
import { DEMO_ROLES } from './roles';

/**
 * The demo's first steps: read its flags, check that the servers answer, and prepare its own database
 * (created, or reset when it no longer matches Kafka), its schemas (migrate) and its topic.
 */

export const DEFAULT_DATABASE = 'outbox_demo';
const DB_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Prints one line of the human-readable output (nothing with --json). */
export type Say = (text?: string) => void;

export function sayer(ctx: CommandContext): Say {
  return (text = '') => {
    if (!ctx.json) ctx.out.line(text);
  };
}

export interface DemoFlags {
  database: string;
  relayPort: number;
  projectorPort: number;
  holdMs: number;
  lingerMs: number;
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

/** The demo's flags, checked (a UsageError names the first bad one). */
export function demoFlags(ctx: CommandContext): DemoFlags {
  const database = String(ctx.flags.database);
  if (!DB_NAME.test(database)) throw new UsageError(`--database must be a lower-case PostgreSQL name ([a-z_][a-z0-9_]*), got "${database}"`, 'demo');
  return {
    database,
    relayPort: port('relay-port', ctx.flags['relay-port'], 9464),
    projectorPort: port('projector-port', ctx.flags['projector-port'], 9465),
    holdMs: Math.round(seconds('hold', ctx.flags.hold, 3) * 1000),
    lingerMs: Math.round(seconds('linger', ctx.flags.linger, 0) * 1000),
  };
}

/** The servers answer (one clear line naming the one that does not). */
export async function checkServers(ctx: CommandContext): Promise<void> {
  const probe = createPool(ctx.config.databaseUrl, ctx.libLogger, { max: 1, applicationName: 'outbox-demo' });
  try {
    await preflight(ctx, probe);
  } finally {
    await probe.end().catch(() => undefined);
  }
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Create the demo database on the DATABASE_URL server unless it exists (concurrent runs tolerated); `reset` drops it first. */
async function ensureDatabase({ config, logger, name, reset = false }: { config: OutboxConfig; logger: Logger; name: string; reset?: boolean }): Promise<boolean> {
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

export interface DemoDatabase {
  /** The command's configuration pointed at the demo's database, topic and client id. */
  config: OutboxConfig;
  topic: string;
  /** `host:port/database`, as printed. */
  target: string;
}

/**
 * The demo's database (created if missing; reset when it no longer matches Kafka) and the configuration
 * that points relay, projector and service at it and at the topic `<database>.user.events`.
 */
export async function prepareDatabase({ ctx, database, run, say }: { ctx: CommandContext; database: string; run: string; say: Say }): Promise<DemoDatabase> {
  const topic = `${database}.user.events`;
  let created = await ensureDatabase({ config: ctx.config, logger: ctx.libLogger, name: database });
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
  const u = new URL(config.databaseUrl);
  const target = `${u.hostname}:${u.port || '5432'}/${database}`;

  say(`kafka-outbox demo — run ${run}`);
  const stale = created ? undefined : await staleReason(config, ctx.libLogger, topic);
  if (stale) {
    say(`  database   ${target}: reset, because ${stale}`);
    created = await ensureDatabase({ config: ctx.config, logger: ctx.libLogger, name: database, reset: true });
  }
  say(`  database   ${target} (${created ? 'created' : 'existing'}; the demo's own, kept between runs)`);
  say(`  topic      ${topic}`);
  return { config, topic, target };
}

/** Migrate the demo database, then create the topic and wait until the broker is ready for the projector. */
export async function prepareSchemaAndTopic({ config, logger, topic, say }: { config: OutboxConfig; logger: Logger; topic: string; say: Say }): Promise<void> {
  const c = await connectClient(config.databaseUrl, logger, 'outbox-demo').catch((err: unknown) => {
    throw pgError(err, config, 'connection');
  });
  let applied: string[];
  try {
    applied = await migrate(c, { schema: config.schema, projectorSchema: config.projector.schema, logger });
  } catch (err) {
    throw pgError(err, config, 'migration');
  } finally {
    await c.end().catch(() => undefined);
  }
  say(`  migrate    ${applied.length === 0 ? 'up to date' : `applied ${applied.join(', ')}`}`);
  await prepareKafka({ config, logger, topic, groupId: `${config.kafka.clientId}.projector.audit_log` });
}

/**
 * Create the demo topic (as the relay would) so that the projector never subscribes to a missing one, and
 * wait (up to 30 s) until the broker's group coordinator and producer-id allocation answer: a stack that
 * has just started is still loading them, and the projector's consumers would log errors meanwhile.
 */
async function prepareKafka({ config, logger, topic, groupId }: { config: OutboxConfig; logger: Logger; topic: string; groupId: string }): Promise<void> {
  // The servers answered the start-up check: the default retries let a busy broker finish electing the new
  // topic's leaders ("This server does not host this topic-partition") instead of failing the demo.
  const kafka = createKafka(config.kafka, logger, 'demo-setup');
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
