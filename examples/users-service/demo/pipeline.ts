import type pg from 'pg';
import { readinessChecks, startAdminServer, type AdminServer } from '../../../core/admin-server';
import type { OutboxConfig } from '../../../core/config';
import { isOutboxError } from '../../../core/errors';
import { createMetrics, type OutboxMetrics } from '../../../core/metrics';
import { createPool } from '../../../core/pg';
import { sleep } from '../../../core/retry';
import type { CommandContext } from '../../../cli/framework';
import { relayMetricsObserver } from '../../../cli/commands/run';
import { DEMO_ROLES, roleUrls, type RoleUrls } from './roles';
import type { Say } from './setup';

/**
 * The running parts of the demo: its connection pools (the demo's own login, the service's role, the
 * relay's metrics), and the relay and the projector in this process, each with its admin port.
 */

export interface DemoPipeline {
  /** The demo's own login (the migrating one): it only sets up and observes. */
  pool: pg.Pool;
  /** The service's pool, as the application's role. */
  appPool: pg.Pool;
  /** The relay's metrics queries, as the relay's role. */
  relayPool: pg.Pool;
  urls: RoleUrls;
  servers: AdminServer[];
  relay?: { stop(): Promise<void> };
  projector?: { stop(): Promise<void> };
}

/**
 * The demo's pools. The service writes as the application's role, the relay and the projector run as
 * theirs (docs/security.md), when the demo's login may act as them.
 */
export async function connectPipeline({ ctx, config, say }: { ctx: CommandContext; config: OutboxConfig; say: Say }): Promise<DemoPipeline> {
  const pool = createPool(config.databaseUrl, ctx.libLogger, { max: 6, applicationName: 'outbox-demo' });
  const urls = await roleUrls(pool, config.databaseUrl);
  if (!urls.asRoles) say(`  roles      the DATABASE_URL user cannot act as ${Object.values(DEMO_ROLES).join(', ')}: everything runs as that user`);
  const appPool = createPool(urls.app, ctx.libLogger, { max: 4, applicationName: 'outbox-demo-service' });
  const relayPool = createPool(urls.relay, ctx.libLogger, { max: 1, applicationName: 'outbox-demo-relay-metrics' });
  return { pool, appPool, relayPool, urls, servers: [] };
}

export interface StartPipelineOptions {
  ctx: CommandContext;
  config: OutboxConfig;
  relayPort: number;
  projectorPort: number;
  say: Say;
}

/** Start the relay and the projector, each with its admin port (printed); returns those ports. */
export async function startPipeline(p: DemoPipeline, { ctx, config, relayPort, projectorPort, say }: StartPipelineOptions): Promise<{ relay: number; projector: number }> {
  // kafkajs warns once per producer about its v2 default partitioner; the relay sets it explicitly.
  process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';
  const { startRelay } = require('../../../relay/index') as typeof import('../../../relay/index');
  const { startProjector } = require('../../../projector/index') as typeof import('../../../projector/index');
  const logger = ctx.logger.child({ component: 'demo' });
  const host = ctx.config.adminHost ?? '127.0.0.1';
  const relayMetrics = createMetrics({ labels: { component: 'relay' }, query: (sql, params) => p.relayPool.query(sql, params), schema: config.schema, logger });
  const projectorMetrics = createMetrics({ labels: { component: 'projector' }, logger });

  const relayAdmin = await adminServer({ port: relayPort, host, metrics: relayMetrics, pool: p.pool, config, ctx });
  p.servers.push(relayAdmin);
  const projectorAdmin = await adminServer({ port: projectorPort, host, metrics: projectorMetrics, pool: p.pool, config, ctx });
  p.servers.push(projectorAdmin);
  const url = (port: number): string => `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  p.relay = startRelay({
    config: { ...config, databaseUrl: p.urls.relay },
    logger: ctx.logger.child({ component: 'relay' }),
    observer: relayMetricsObserver(relayMetrics),
  });
  // A stack that has just started may still be electing coordinators: retry the projector's start-up a few times.
  for (let attempt = 1; ; attempt++) {
    try {
      p.projector = await startProjector({
        config,
        databaseUrl: p.urls.projector,
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
  return { relay: relayAdmin.port, projector: projectorAdmin.port };
}

/** Stop whatever of the pipeline runs, close the admin servers and the pools. */
export async function stopPipeline(p: DemoPipeline, say: Say): Promise<void> {
  await Promise.allSettled([p.relay?.stop(), p.projector?.stop()]);
  await Promise.allSettled(p.servers.map((srv) => srv.close()));
  await Promise.allSettled([p.pool.end(), p.appPool.end(), p.relayPool.end()]);
  say('relay and projector stopped.');
}

interface AdminServerOptions {
  port: number;
  host: string;
  metrics: OutboxMetrics;
  pool: pg.Pool;
  config: OutboxConfig;
  ctx: CommandContext;
}

/** The admin server on `port`, or on a free port when that one is taken (printed either way). */
async function adminServer({ port, host, metrics, pool, config, ctx }: AdminServerOptions): Promise<AdminServer> {
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
