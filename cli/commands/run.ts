import type pg from 'pg';
import { readinessChecks, startAdminServer, type AdminServer } from '../../core/admin-server';
import type { OutboxConfig } from '../../core/config';
import type { Logger } from '../../core/logger';
import { createMetrics, type OutboxMetrics } from '../../core/metrics';
import { createPool } from '../../core/pg';
import type { RelayObserver } from '../../relay/run-relay';
import { pgError, requireKafka, requireRegistry } from '../connections';
import { onStopSignal, parseTime, UsageError, type Command, type CommandContext, type FlagSpec } from '../framework';
import { createProgressRenderer } from '../render-progress';

/** What relay/index.ts `startRelay` and projector/index.ts `startProjector` return. */
export interface RunningHandle {
  stop(): Promise<void>;
  done: Promise<void>;
}
type StartFn = (args: { config: OutboxConfig; logger: Logger; metrics?: OutboxMetrics }) => Promise<RunningHandle> | RunningHandle;

const adminFlags: Record<string, FlagSpec> = {
  'admin-port': { type: 'string', placeholder: 'port', description: 'Admin HTTP port for /metrics, /healthz, /readyz (0 = off; default OUTBOX_ADMIN_PORT)' },
  'admin-host': { type: 'string', placeholder: 'host', description: 'Interface of the admin port (default OUTBOX_ADMIN_HOST or 127.0.0.1)' },
};

function adminSettings(ctx: CommandContext): { port: number; host: string } {
  const raw = ctx.flags['admin-port'];
  let port = ctx.config.adminPort;
  if (typeof raw === 'string') {
    if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) throw new UsageError(`--admin-port must be a port number 0..65535, got "${raw}"`);
    port = Number(raw);
  }
  const host = typeof ctx.flags['admin-host'] === 'string' ? (ctx.flags['admin-host'] as string) : (ctx.config.adminHost ?? '127.0.0.1');
  return { port, host };
}

/** Fail fast (exit 1, one line) when a dependency is unreachable at start-up. */
export async function preflight(ctx: CommandContext, pool: pg.Pool): Promise<void> {
  await Promise.all([
    pool.query('SELECT 1').catch((err: unknown) => {
      throw pgError(err, ctx.config, 'connection');
    }),
    requireKafka(ctx.config.kafka, ctx.libLogger),
    requireRegistry(ctx.config.registry),
  ]);
}

/**
 * Runs a long-lived component until SIGTERM/SIGINT (then stop() and exit 0) or until it ends by itself
 * (exit 0 when `done` resolves, 1 with its error when it rejects). Serves the admin port meanwhile.
 */
async function runComponent(ctx: CommandContext, kind: 'relay' | 'projector', load: () => Promise<StartFn>): Promise<number> {
  const { config, logger } = ctx;
  const admin = adminSettings(ctx);
  const pool = createPool(config.databaseUrl, logger, { max: 2, applicationName: `outbox-${kind}-admin` });
  let server: AdminServer | undefined;
  let handle: RunningHandle | undefined;
  try {
    await preflight(ctx, pool);
    const start = await load();
    const metrics = createMetrics({
      labels: { component: kind },
      ...(kind === 'relay' ? { query: (sql: string, params?: unknown[]) => pool.query(sql, params), schema: config.schema } : {}),
      logger,
    });
    if (admin.port > 0) {
      server = await startAdminServer({
        port: admin.port,
        host: admin.host,
        registry: metrics.registry,
        readiness: readinessChecks({ pool, kafka: config.kafka, registry: config.registry, logger: ctx.libLogger }),
        logger,
      });
    }
    const stopSignal = onStopSignal();
    handle = await start({ config, logger: logger.child({ component: kind }), metrics });
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
 * The relay's metrics: published events and commit → ack latency by topic, parked events counted.
 * (Backlog, oldest age and the parked gauge are read from PostgreSQL at scrape time by createMetrics.)
 */
export function relayMetricsObserver(metrics: OutboxMetrics): RelayObserver {
  return {
    published(count, latenciesMs, topics) {
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
  };
}

export const relayCommand: Command = {
  name: 'relay',
  summary: 'Publish outbox events to Kafka (runs until SIGTERM/SIGINT)',
  description: 'Only one relay per schema publishes at a time (leader election); others wait as hot standbys.',
  flags: adminFlags,
  needs: { database: true, kafka: true, registry: true },
  longRunning: true,
  async run(ctx) {
    return runComponent(ctx, 'relay', async () => {
      const { startRelay } = (require('../../relay/index') as typeof import('../../relay/index'));
      return ({ config, logger, metrics }) =>
        startRelay({
          config,
          logger,
          ...(metrics ? { observer: relayMetricsObserver(metrics) } : {}),
        });
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
      const { startProjector } = require('../../projector/index') as typeof import('../../projector/index');
      return ({ config, logger, metrics }) => startProjector({ config, logger, ...(metrics ? { metrics } : {}) });
    });
  },
};

export const rebuildCommand: Command = {
  name: 'rebuild',
  summary: 'Rebuild a projection from its topics into a shadow generation, then swap it in',
  description: 'The live read model keeps serving during the rebuild; --dry-run compares shadow and live instead of swapping.',
  positionals: [{ name: 'projection', description: 'Name of the projection, e.g. users', required: true }],
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
    const { rebuildProjection } = require('../../projector/index') as typeof import('../../projector/index');
    const log = ctx.logger.child({ component: 'rebuild', projection });
    const progress = createProgressRenderer(process.stderr, 'rebuild_progress');
    const result = await rebuildProjection({
      config: ctx.config,
      logger: log,
      projection,
      ...(ctx.flags['dry-run'] === true ? { dryRun: true } : {}),
      ...(from ? { from: { timestamp: from } } : {}),
      onProgress(p) {
        progress.update(p);
        log.debug({ phase: p.phase, processed: p.processed, total: p.total, eventsPerSecond: Math.round(p.eventsPerSecond), etaSeconds: p.etaSeconds }, `rebuild ${Math.round(p.ratio * 100)}%`);
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
