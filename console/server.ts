import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OutboxConfig } from '../core/config';
import { errorMessage, isOutboxError, OutboxError } from '../core/errors';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { createPool, dbTarget } from '../core/pg';
import { redact } from '../core/redact';
import { consoleActions } from './actions';
import { isLoopback } from './auth';
import { ConsoleData } from './data';
import { HttpError, loadAssets, sendJson } from './http';
import { Jobs } from './jobs';
import { messagePage } from './pages';
import { pageRoutes, router, sendPage, type PageFrame } from './routes';

export { matchToken } from './auth';

/**
 * `outbox console`: a small web console for operators and auditors on node:http. Pages are rendered
 * on the server (console/pages.ts), with one script (assets/console.js) that refreshes the overview
 * from /api/overview and sends actions. Everything it serves comes from this package.
 *
 * The parts: console/routes.ts (the routing table: pages, read-only API, dispatch), console/actions.ts
 * (retry, skip, rebuild), console/auth.ts (loopback Host check, token and same-origin checks),
 * console/http.ts (security headers, bodies, HttpError); this file wires them and runs the server.
 *
 * Security:
 * - Reading needs no token (bind it to loopback or put it behind your own access control). When bound
 *   to a loopback address, requests must name a loopback host (no DNS rebinding).
 * - Actions (retry, skip, rebuild) are POSTs with a JSON body and `Authorization: Bearer <token>`
 *   (a token of OUTBOX_CONSOLE_TOKEN; the page's script sends it from the token field), plus an optional
 *   `X-Outbox-User`. A cross-site page cannot send that header without a CORS preflight, which is never
 *   granted; besides, POSTs whose Origin is another site or whose Sec-Fetch-Site is not same-origin are
 *   refused. Every action is logged with the token's name and the user given with it; refusals too.
 * - A strict Content-Security-Policy (only this origin's script and style, no inline script, no
 *   framing, no requests elsewhere) and escaped output (console/html.ts).
 */

export interface ConsoleOptions {
  config: OutboxConfig;
  logger: Logger;
  /** Default config.console.port (OUTBOX_CONSOLE_PORT, 9470); 0 = a free port. */
  port?: number;
  /** Default config.console.host (OUTBOX_CONSOLE_HOST, 127.0.0.1). */
  host?: string;
  /** Environment of the `outbox` commands the console runs (rebuild, audit prove). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** The `outbox` command line for those (default: this node + bin/outbox.js). */
  outboxCommand?: string[];
  /** Seconds between overview refreshes in the browser (default 5). */
  refreshSeconds?: number;
}

export interface RunningConsole {
  url: string;
  host: string;
  port: number;
  close(): Promise<void>;
}

export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const { config } = options;
  const settings = config.console ?? { port: 9470, host: '127.0.0.1', tokens: [] };
  const { tokens } = settings;
  const host = options.host ?? settings.host;
  const log = options.logger.child({ component: 'console' });
  const assets = loadAssets();
  const pool = createPool(config.databaseUrl, log, { max: 4, applicationName: 'outbox-console' });
  const data = new ConsoleData({ config, pool, logger: log });
  const jobs = new Jobs({ logger: log, env: options.env ?? process.env, ...(options.outboxCommand ? { command: options.outboxCommand } : {}) });
  const frame: PageFrame = { actionsConfigured: tokens.length > 0, target: `${dbTarget(config.databaseUrl)} · ${config.schema}` };

  const handle = router({
    actions: consoleActions({ config, pool, data, jobs, log }),
    pages: pageRoutes({ data, jobs, settings, frame, refreshSeconds: options.refreshSeconds ?? 5 }),
    assets,
    tokens,
    loopbackOnly: isLoopback(host),
    log,
  });
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => sendError({ req, res, err, frame, log }));
  });
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 120_000;

  await listen(server, host, options.port ?? settings.port).catch(async (err: unknown) => {
    await pool.end().catch(() => undefined);
    throw err;
  });
  const bound = (server.address() as AddressInfo).port;
  const untrack = trackRunning('console', `${host}:${bound}`);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  log.info(
    { url, actions: frame.actionsConfigured ? tokens.map((t) => t.name) : 'off' },
    `console on ${url}${frame.actionsConfigured ? '' : ' (read-only: OUTBOX_CONSOLE_TOKEN is not set)'}`,
  );
  let closing: Promise<void> | undefined;
  return {
    url,
    host,
    port: bound,
    close: () =>
      (closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await jobs.close();
        await data.close();
        await pool.end().catch(() => undefined);
        untrack();
      })()),
  };
}

/** Answer a failed request: its HttpError's status and headers (or 409/400/500), as JSON for the API and actions, else as a page. */
function sendError({ req, res, err, frame, log }: { req: IncomingMessage; res: ServerResponse; err: unknown; frame: PageFrame; log: Logger }): void {
  const status = err instanceof HttpError ? err.status : isOutboxError(err, 'NOT_FOUND') ? 409 : isOutboxError(err, 'USAGE') ? 400 : 500;
  const message = redact(errorMessage(err));
  if (status >= 500) log.error({ err, url: req.url }, `console: ${req.method ?? ''} ${req.url ?? ''} failed: ${message}`);
  else log.debug({ url: req.url, status }, message);
  if (res.headersSent) return void res.destroy();
  const headers = err instanceof HttpError ? err.headers : {};
  const wantsJson = (req.url ?? '').startsWith('/api/') || req.method === 'POST';
  if (wantsJson) return sendJson(res, status, { error: message }, headers);
  sendPage(res, frame, { status, page: 'overview', title: 'Error', body: messagePage(`Error ${status}`, message), headers });
}

/** Listen on host:port; a port that cannot be opened is a CONFIG_INVALID naming it. */
function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(new OutboxError('CONFIG_INVALID', `the console port ${host}:${port} cannot be opened: ${err.code ?? err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
