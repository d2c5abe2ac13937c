import { onStopSignal, UsageError, type Command } from '../framework';
import { load } from '../lazy';

/** `outbox console`: the web console for operators and auditors (console/), until SIGTERM/SIGINT. */
export const consoleCommand: Command = {
  name: 'console',
  summary: 'Serve the web console: overview, parked events (retry/skip), projections (rebuild), audit histories',
  description: [
    'Read-only without a token. Actions (retry, skip, rebuild) need a token of OUTBOX_CONSOLE_TOKEN',
    "(name:token[,name:token...]) entered in the page, and are logged with the token's name and the user",
    'given with it. Binds to 127.0.0.1:9470 unless --host/--port or OUTBOX_CONSOLE_HOST/PORT say otherwise.',
    'With OUTBOX_CONSOLE_CHECKPOINTS (a checkpoint topic or file), audit pages link to proofs.',
  ].join('\n'),
  flags: {
    port: { type: 'string', placeholder: 'port', description: 'Port to listen on (0 = any free port; default OUTBOX_CONSOLE_PORT or 9470)' },
    host: { type: 'string', placeholder: 'host', description: 'Interface to bind (default OUTBOX_CONSOLE_HOST or 127.0.0.1)' },
  },
  needs: { database: true },
  longRunning: true,
  async run({ config, logger, flags, json, out, env }) {
    let port: number | undefined;
    if (typeof flags.port === 'string') {
      if (!/^\d{1,5}$/.test(flags.port) || Number(flags.port) > 65535) throw new UsageError(`--port must be a port number 0..65535, got "${flags.port}"`, 'console');
      port = Number(flags.port);
    }
    let host: string | undefined;
    if (typeof flags.host === 'string') {
      if (!/^([A-Za-z0-9.-]+|[0-9a-fA-F:]+)$/.test(flags.host)) throw new UsageError(`--host must be a host name or IP address, got "${flags.host}"`, 'console');
      host = flags.host;
    }
    const { startConsole } = load('console');
    const stop = onStopSignal();
    const running = await startConsole({
      config,
      logger,
      ...(port !== undefined ? { port } : {}),
      ...(host !== undefined ? { host } : {}),
      env: { ...process.env, ...env },
    });
    const actions = (config.console?.tokens.length ?? 0) > 0;
    if (json) out.line(JSON.stringify({ url: running.url, actions }));
    else out.line(`outbox console on ${running.url}${actions ? '' : ' (read-only: set OUTBOX_CONSOLE_TOKEN to enable retry, skip and rebuild)'}`);
    const signal = await stop;
    logger.info({ signal }, 'console stopping');
    await running.close();
    return 0;
  },
};
