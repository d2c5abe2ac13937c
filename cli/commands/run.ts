import type pg from 'pg';
import { DEFAULT_ADMIN_PORTS, readinessChecks, startAdminServer, type AdminServer, type AdminServerOptions } from '../../core/admin-server';
import { errorMessage, isOutboxError, OutboxError } from '../../core/errors';
import { isRetriable, retry } from '../../core/retry';
import type { OutboxConfig } from '../../core/config';
import { createLiveness, type Liveness } from '../../core/lifecycle';
import type { Logger } from '../../core/logger';
import { createMetrics, type OutboxMetrics } from '../../core/metrics';
import { createPool } from '../../core/pg';
import { startCheckpointer } from '../../audit/checkpointer';
import type { ShardedRelayObserver } from '../../relay';
import { pgError, requireKafka, requireRegistry } from '../connections';
import { onStopSignal, parseTime, UsageError, type Command, type CommandContext, type FlagSpec } from '../framework';
import { findProjection } from '../domain';
import { signingKeyOf } from './audit';
import { load } from '../lazy';
import { createProgressRenderer } from '../render-progress';

/** What relay/index.ts `startRelay` and projector/index.ts `startProjector` return. */
export interface RunningHandle {
  stop(): Promise<void>;
  done: Promise<void>;
}
type StartFn = (args: { config: OutboxConfig; logger: Logger; metrics?: OutboxMetrics; liveness: Liveness }) => Promise<RunningHandle> | RunningHandle;

const adminFlags: Record<string, FlagSpec> = {
  'admin-port': {
    type: 'string',
    placeholder: 'port',
    description: 'Admin HTTP port for /metrics, /healthz, /readyz (0 = off; default OUTBOX_ADMIN_PORT, else 9464 for relay, 9465 for project)',
  },
  'admin-host': { type: 'string', placeholder: 'host', description: 'Interface of the admin port (default OUTBOX_ADMIN_HOST or 127.0.0.1)' },
};

/** The admin port: the flag, else OUTBOX_ADMIN_PORT, else the component's default (`chosen` false). */
function adminSettings(ctx: CommandContext, kind: 'relay' | 'projector'): { port: number; host: string; chosen: boolean } {
  const raw = ctx.flags['admin-port'];
  let port = ctx.config.adminPort;
  if (typeof raw === 'string') {
    if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) throw new UsageError(`--admin-port must be a port number 0..65535, got "${raw}"`);
    port = Number(raw);
  }
  const host = typeof ctx.flags['admin-host'] === 'string' ? (ctx.flags['admin-host'] as string) : (ctx.config.adminHost ?? '127.0.0.1');
  return port === undefined ? { port: DEFAULT_ADMIN_PORTS[kind], host, chosen: false } : { port, host, chosen: true };
}

/**
 * Start the admin server. A port that was chosen (flag or OUTBOX_ADMIN_PORT) and is in use stops the
 * command; the default port in use (say, a second relay on the host) falls back to a free port, logged.
 */
async function startAdmin(admin: { port: number; host: string; chosen: boolean }, options: Omit<AdminServerOptions, 'port' | 'host'>): Promise<AdminServer> {
  try {
    return await startAdminServer({ ...options, port: admin.port, host: admin.host });
  } catch (err) {
    const inUse = isOutboxError(err, 'CONFIG_INVALID') && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'EADDRINUSE';
    if (admin.chosen || !inUse) throw err;
    options.logger.warn(
      { port: admin.port },
      `the default admin port ${admin.port} is in use; serving the admin endpoints on a free port instead (set OUTBOX_ADMIN_PORT to choose one)`,
    );
    return startAdminServer({ ...options, port: 0, host: admin.host });
  }
}

/**
 * Fail fast (exit 1, one line) when a dependency is unreachable at start-up, or, with `migrated`, when
 * OUTBOX_SCHEMA holds no outbox tables.
 */
export async function preflight(ctx: CommandContext, pool: pg.Pool, options: { migrated?: boolean } = {}): Promise<void> {
  await Promise.all([
    pool.query('SELECT 1').catch((err: unknown) => {
      throw pgError(err, ctx.config, 'connection');
    }),
    requireKafka(ctx.config.kafka, ctx.libLogger),
    requireRegistry(ctx.config.registry),
  ]);
  if (options.migrated) await requireMigrated(pool, ctx.config.schema);
}

/**
 * The outbox tables must exist in OUTBOX_SCHEMA: a relay or projector pointed at a schema nobody migrated
 * would otherwise retry "relation does not exist" forever.
 */
async function requireMigrated(pool: pg.Pool, schema: string): Promise<void> {
  const { rows } = await pool.query<{ outbox: string | null; delivery: string | null }>(
    `SELECT to_regclass(pg_catalog.quote_ident($1) || '.outbox')::text AS outbox, to_regclass(pg_catalog.quote_ident($1) || '.outbox_delivery')::text AS delivery`,
    [schema],
  );
  const r = rows[0];
  if (!r?.outbox || !r.delivery) {
    const db = await pool.query<{ db: string }>('SELECT current_database() AS db');
    throw new OutboxError(
      'CONFIG_INVALID',
      `OUTBOX_SCHEMA "${schema}" holds no outbox tables in database ${db.rows[0]?.db ?? '?'}: run \`outbox migrate\` first, or set OUTBOX_SCHEMA to the migrated schema`,
      { details: { variable: 'OUTBOX_SCHEMA' } },
    );
  }
}

/**
 * Runs a long-lived component until SIGTERM/SIGINT (then stop() and exit 0) or until it ends by itself
 * (exit 0 when `done` resolves, 1 with its error when it rejects). Serves the admin port meanwhile.
 */
async function runComponent(ctx: CommandContext, kind: 'relay' | 'projector', load: () => Promise<StartFn>): Promise<number> {
  const { config, logger } = ctx;
  const admin = adminSettings(ctx, kind);
  const pool = createPool(config.databaseUrl, logger, { max: 2, applicationName: `outbox-${kind}-admin` });
  let server: AdminServer | undefined;
  let handle: RunningHandle | undefined;
  try {
    // The domain first: a config or schema problem is reported without touching the servers.
    const start = await load();
    await preflight(ctx, pool, { migrated: true });
    const metrics = createMetrics({
      labels: { component: kind },
      ...(kind === 'relay' ? { query: (sql: string, params?: unknown[]) => pool.query(sql, params), schema: config.schema } : {}),
      logger,
    });
    const liveness = createLiveness({ timeoutMs: config.livenessTimeoutMs ?? 120_000 });
    if (admin.port > 0) {
      server = await startAdmin(admin, {
        registry: metrics.registry,
        readiness: readinessChecks({ pool, kafka: config.kafka, registry: config.registry, logger: ctx.libLogger }),
        liveness,
        logger,
      });
    }
    const stopSignal = onStopSignal();
    // A transient failure while starting (a connection terminated under it, a broker electing leaders)
    // is retried with the one backoff policy, as the running loops retry theirs; anything else stops the
    // command with its one line.
    let stoppedBy: NodeJS.Signals | undefined;
    const stopping = new AbortController();
    void stopSignal.then((sig) => {
      stoppedBy = sig;
      stopping.abort();
    });
    try {
      handle = await retry(async () => start({ config, logger: logger.child({ component: kind }), metrics, liveness }), {
        retryIf: (err) => isRetriable(err) && stoppedBy === undefined,
        signal: stopping.signal,
        onRetry: ({ err, attempt, delayMs }) =>
          logger.warn({ err, retryInMs: delayMs, failures: attempt }, `${kind} start failed, retrying in ${delayMs} ms: ${errorMessage(err)}`),
      });
    } catch (err) {
      if (stoppedBy === undefined || !isOutboxError(err, 'SHUTDOWN')) throw err;
      logger.info({ signal: stoppedBy }, `${kind} stopped before it started`);
      return 0;
    }
    const outcome = await Promise.race([
      stopSignal.then((sig) => ({ kind: 'signal' as const, sig })),
      handle.done.then(
        () => ({ kind: 'done' as const }),
        (err: unknown) => ({ kind: 'failed' as const, err }),
      ),
    ]);
    if (outcome.kind === 'signal') {
      logger.info({ signal: outcome.sig }, `${kind} stopping`);
      await handle.stop();
      logger.info(`${kind} stopped`);
      return 0;
    }
    if (outcome.kind === 'failed') throw outcome.err;
    return 0;
  } finally {
    await server?.close();
    await pool.end().catch(() => undefined);
  }
}

/**
 * The relay's metrics: published events and commit → ack latency by topic, parked events counted,
 * leadership (1 while active) and loop failures by stage; with `liveness`, its heartbeat.
 * (Backlog, oldest age and the parked gauge are read from PostgreSQL at scrape time by createMetrics.)
 * `outbox_relay_leader` is 1 while this instance publishes: the leader; with `sharded`
 * (OUTBOX_RELAY_SHARDED), a member that owns at least one shard (a member without shards, say a fifth
 * instance beside 32 shards shared by four, or a newcomer before the others handed it its share, is 0).
 * So in both modes `sum(outbox_relay_leader) == 0` means nothing is published.
 */
export function relayMetricsObserver(metrics: OutboxMetrics, liveness?: Liveness, options: { sharded?: boolean } = {}): ShardedRelayObserver {
  let active = false;
  let shards = 0;
  const setLeader = (): void => metrics.relayLeader.set(active && (!options.sharded || shards > 0) ? 1 : 0);
  return {
    heartbeat: () => liveness?.beat(),
    published(count, latenciesMs, topics) {
      liveness?.beat(); // a long backlog is drained batch after batch without the loop going round
      if (!topics || topics.length !== latenciesMs.length) {
        metrics.publishedTotal.inc(count);
        for (const ms of latenciesMs) metrics.publishLatency.observe(ms / 1000);
        return;
      }
      const perTopic = new Map<string, number>();
      latenciesMs.forEach((ms, i) => {
        const topic = topics[i]!;
        perTopic.set(topic, (perTopic.get(topic) ?? 0) + 1);
        metrics.publishLatency.observe({ topic }, ms / 1000);
      });
      for (const [topic, n] of perTopic) metrics.publishedTotal.inc({ topic }, n);
    },
    parked() {
      metrics.parkedEventsTotal.inc();
    },
    leadership(isLeader) {
      active = isLeader;
      setLeader();
    },
    shardsOwned(count) {
      shards = count;
      metrics.relayShardsOwned.set(count);
      setLeader();
    },
    failed(stage) {
      metrics.relayFailuresTotal.inc({ stage });
    },
  };
}

export const relayCommand: Command = {
  name: 'relay',
  summary: 'Publish outbox events to Kafka (runs until SIGTERM/SIGINT)',
  description:
    "Only one relay per schema publishes at a time (leader election); others wait as hot standbys.\nWith OUTBOX_RELAY_SHARDED=true all of them publish, each its share of the queue's shards.",
  flags: adminFlags,
  needs: { database: true, kafka: true, registry: true },
  longRunning: true,
  async run(ctx) {
    // With OUTBOX_AUDIT_CHECKPOINT_EVERY, signed checkpoints are taken beside the relay; a missing or
    // unreadable key stops the command before anything starts.
    const everyMs = ctx.config.audit?.checkpointEveryMs;
    const key = everyMs !== undefined ? signingKeyOf(ctx.config, undefined) : undefined;
    return runComponent(ctx, 'relay', async () => {
      const domain = await ctx.domain();
      const catalog = domain.catalog();
      const { startRelay } = load('relay');
      return async ({ logger, metrics, liveness }) => {
        const relay = await startRelay({
          config: domain.config,
          logger,
          catalog,
          observer: metrics ? relayMetricsObserver(metrics, liveness, { sharded: domain.config.relay.sharded === true }) : { heartbeat: () => liveness.beat() },
        });
        if (everyMs === undefined || key === undefined) return relay;
        const file = ctx.config.audit?.checkpointFile;
        const checkpointer = startCheckpointer({
          databaseUrl: ctx.config.databaseUrl,
          schema: ctx.config.schema,
          kafka: ctx.config.kafka,
          key,
          everyMs,
          ...(file !== undefined ? { file } : {}),
          logger: ctx.logger.child({ component: 'audit-checkpoint' }),
          libLogger: ctx.libLogger,
        });
        return {
          stop: async () => {
            await Promise.all([checkpointer.stop(), relay.stop()]);
          },
          done: relay.done.finally(() => checkpointer.stop()),
        };
      };
    });
  },
};

export const projectCommand: Command = {
  name: 'project',
  summary: 'Consume the event topics and maintain the read models (runs until SIGTERM/SIGINT)',
  flags: adminFlags,
  needs: { database: true, kafka: true, registry: true },
  longRunning: true,
  async run(ctx) {
    return runComponent(ctx, 'projector', async () => {
      const domain = await ctx.domain();
      const catalog = domain.catalog();
      const { startProjector } = load('projector');
      const { createEventDecoder } = load('decoder');
      return ({ logger, metrics, liveness }) =>
        startProjector({
          config: domain.config,
          logger,
          catalog,
          decoder: createEventDecoder({ registry: domain.config.registry, catalog, upcasters: domain.upcasters, logger }),
          projections: (deps) => domain.projections(deps),
          ...(metrics ? { metrics } : {}),
          heartbeat: () => liveness.beat(),
        });
    });
  },
};

export const rebuildCommand: Command = {
  name: 'rebuild',
  summary: 'Rebuild a projection from its topics into a shadow generation, then swap it in',
  description: 'The live read model keeps serving during the rebuild; --dry-run compares shadow and live instead of swapping.',
  positionals: [{ name: 'projection', description: "Name of the projection: audit_log or one of the config module's projections", required: true }],
  flags: {
    'dry-run': { type: 'boolean', description: 'Build the shadow, compare it with the live read model (row counts, checksums), drop it' },
    'from-beginning': { type: 'boolean', description: 'Replay the topics from offset 0 (the default)' },
    'from-timestamp': { type: 'string', placeholder: 'time', description: 'Replay from the first offset at or after this time (ISO 8601)' },
    from: { type: 'string', placeholder: 'time', description: 'Same as --from-timestamp' },
  },
  needs: { database: true, kafka: true, registry: true },
  longRunning: true,
  async run(ctx) {
    const projection = ctx.positionals[0]!;
    const fromFlag = typeof ctx.flags['from-timestamp'] === 'string' ? 'from-timestamp' : typeof ctx.flags.from === 'string' ? 'from' : undefined;
    if (fromFlag && ctx.flags['from-beginning'] === true) throw new UsageError(`--from-beginning and --${fromFlag} exclude each other`);
    const from = fromFlag ? parseTime(fromFlag, ctx.flags[fromFlag] as string) : undefined;
    const pool = createPool(ctx.config.databaseUrl, ctx.logger, { max: 1, applicationName: 'outbox-rebuild' });
    try {
      await preflight(ctx, pool);
    } finally {
      await pool.end().catch(() => undefined);
    }
    const domain = await ctx.domain();
    const catalog = domain.catalog();
    const target = findProjection(domain, { catalog }, projection);
    const { rebuildProjection } = load('projector');
    const { createEventDecoder } = load('decoder');
    const log = ctx.logger.child({ component: 'rebuild', projection });
    const progress = createProgressRenderer(process.stderr, 'rebuild_progress');
    const result = await rebuildProjection({
      config: domain.config,
      logger: log,
      projection: target,
      catalog,
      decoder: createEventDecoder({ registry: domain.config.registry, catalog, upcasters: domain.upcasters, logger: log }),
      ...(ctx.flags['dry-run'] === true ? { dryRun: true } : {}),
      ...(from ? { from: { timestamp: from } } : {}),
      onProgress(p) {
        progress.update(p);
        log.debug(
          { phase: p.phase, processed: p.processed, total: p.total, eventsPerSecond: Math.round(p.eventsPerSecond), etaSeconds: p.etaSeconds },
          `rebuild ${Math.round(p.ratio * 100)}%`,
        );
      },
    }).finally(() => progress.done());
    if (ctx.json) ctx.out.json(result);
    else {
      const r = result;
      ctx.out.line(
        `projection ${projection}: generation ${r.generation} built from ${r.events} event(s) in ${r.seconds.toFixed(1)}s (${Math.round(r.eventsPerSecond)} events/s), ${r.swapped ? `swapped in (was generation ${r.previousGeneration})` : 'not swapped (dry run)'}`,
      );
      if (r.comparison) ctx.out.line(JSON.stringify(r.comparison, null, 2));
    }
    return 0;
  },
};
