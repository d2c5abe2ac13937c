/**
 * A projector as its own process (tests kill it with SIGKILL; also usable by hand):
 *   node --import tsx projector/projector-process.ts '<json options>'
 * Options: { topics, groupIdPrefix?, catalogNamespace?, sessionTimeoutMs? }; configuration from the
 * environment (core/config.ts). Prints one line `ready` on stdout when started; stops on SIGTERM/SIGINT.
 */
import { loadConfig } from '../core/config';
import { createLogger } from '../core/logger';
import { builtInProjections, startProjector } from './start-projector';

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as { topics?: string[]; groupIdPrefix?: string; catalogNamespace?: string; sessionTimeoutMs?: number };
  const config = loadConfig(undefined, { database: true, kafka: true, registry: true });
  const logger = createLogger({ level: config.logLevel, name: 'projector-process' });
  const projector = await startProjector({
    config,
    logger,
    projections: ({ catalog, metrics }) => builtInProjections(config, { catalog, ...(metrics ? { metrics } : {}), ...(args.topics ? { topics: args.topics } : {}) }),
    ...(args.groupIdPrefix ? { groupIdPrefix: args.groupIdPrefix } : {}),
    ...(args.catalogNamespace ? { catalogNamespace: args.catalogNamespace } : {}),
    ...(args.sessionTimeoutMs ? { sessionTimeoutMs: args.sessionTimeoutMs } : {}),
  });
  process.stdout.write('ready\n');
  const stop = (): void => {
    void projector.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await projector.done;
}

main().catch((err: unknown) => {
  process.stderr.write(`projector process failed: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
