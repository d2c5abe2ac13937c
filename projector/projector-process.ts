/**
 * A projector as its own process (tests kill it with SIGKILL; also usable by hand):
 *   node --import tsx projector/projector-process.ts '<json options>'
 * Options: { topics, groupIdPrefix?, catalogNamespace?, sessionTimeoutMs?, adminPort? }; configuration from
 * the environment (core/config.ts). With `adminPort` (0: any free port) it serves the admin port (/metrics
 * of this instance, as `outbox project` does) and prints `admin <port>` on stdout first. Prints one line
 * `ready` on stdout when started; stops on SIGTERM/SIGINT.
 */
import { startAdminServer, type AdminServer } from '../core/admin-server';
import { loadConfig } from '../core/config';
import { createLogger } from '../core/logger';
import { createMetrics } from '../core/metrics';
import { builtInProjections, startProjector } from './start-projector';

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as { topics?: string[]; groupIdPrefix?: string; catalogNamespace?: string; sessionTimeoutMs?: number; adminPort?: number };
  const config = loadConfig(undefined, { database: true, kafka: true, registry: true });
  const logger = createLogger({ level: config.logLevel, name: 'projector-process' });
  const metrics = args.adminPort !== undefined ? createMetrics({ labels: { component: 'projector' }, defaultMetrics: false, logger }) : undefined;
  let admin: AdminServer | undefined;
  if (metrics) {
    admin = await startAdminServer({ port: args.adminPort!, registry: metrics.registry, readiness: () => Promise.resolve({ ok: true, checks: {} }), logger });
    process.stdout.write(`admin ${admin.port}\n`);
  }
  const projector = await startProjector({
    config,
    logger,
    projections: ({ catalog, metrics }) => builtInProjections(config, { catalog, ...(metrics ? { metrics } : {}), ...(args.topics ? { topics: args.topics } : {}) }),
    ...(metrics ? { metrics } : {}),
    ...(args.groupIdPrefix ? { groupIdPrefix: args.groupIdPrefix } : {}),
    ...(args.catalogNamespace ? { catalogNamespace: args.catalogNamespace } : {}),
    ...(args.sessionTimeoutMs ? { sessionTimeoutMs: args.sessionTimeoutMs } : {}),
  });
  process.stdout.write('ready\n');
  const stop = (): void => {
    void projector
      .stop()
      .then(() => admin?.close())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await projector.done;
  await admin?.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`projector process failed: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
