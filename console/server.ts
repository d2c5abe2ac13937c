import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type pg from 'pg';
import type { ConsoleToken, OutboxConfig } from '../core/config';
import { errorMessage, isOutboxError, OutboxError } from '../core/errors';
import { trackRunning } from '../core/lifecycle';
import type { Logger } from '../core/logger';
import { createPool } from '../core/pg';
import { redact } from '../core/redact';
import { dbTarget } from '../core/pg';
import { retryParked, skipParked } from '../relay/parked';
import { ConsoleData } from './data';
import { layout, type Page, type SafeHtml } from './html';
import { Jobs } from './jobs';
import { auditPage, messagePage, overviewPage, parkedPage, projectionsPage } from './pages';

/**
 * `outbox console`: a small web console for operators and auditors on node:http. Pages are rendered
 * on the server (console/pages.ts), with one script (assets/console.js) that refreshes the overview
 * from /api/overview and sends actions. Everything it serves comes from this package.
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

const ASSETS: Record<string, { file: string; type: string }> = {
  '/assets/console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  '/assets/console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
  '/assets/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_BODY = 16 * 1024;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function loadAssets(): Map<string, { body: Buffer; type: string }> {
  const dirs = [path.join(__dirname, 'assets'), path.join(__dirname, '..', '..', 'console', 'assets')];
  const out = new Map<string, { body: Buffer; type: string }>();
  for (const [route, a] of Object.entries(ASSETS)) {
    const dir = dirs.find((d) => {
      try {
        readFileSync(path.join(d, a.file));
        return true;
      } catch {
        return false;
      }
    });
    if (!dir) throw new OutboxError('INTERNAL', `console asset ${a.file} is missing from the package`);
    out.set(route, { body: readFileSync(path.join(dir, a.file)), type: a.type });
  }
  return out;
}

function isLoopback(host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `host` of a Host header value (`[::1]:9470` → `[::1]`, `localhost:9470` → `localhost`). */
function hostOf(header: string): string {
  if (header.startsWith('[')) return header.slice(0, header.indexOf(']') + 1);
  return header.split(':')[0] ?? header;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** The token's holder, comparing in constant time against every configured token. */
export function matchToken(tokens: ConsoleToken[], given: string): ConsoleToken | undefined {
  const g = digest(given);
  let found: ConsoleToken | undefined;
  for (const t of tokens) if (timingSafeEqual(digest(t.token), g) && !found) found = t;
  return found;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface Actor {
  token: string;
  user?: string;
  /** `user (token name)` or `token name`. */
  by: string;
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, ...headers });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  send(res, status, 'application/json; charset=utf-8', `${redact(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)))}\n`, headers);
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'the request body is not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new HttpError(400, 'the request body must be a JSON object');
  return value as Record<string, unknown>;
}

function stringField(body: Record<string, unknown>, name: string, options: { required?: boolean; max?: number } = {}): string | undefined {
  const v = body[name];
  if (v === undefined || v === null || v === '') {
    if (options.required) throw new HttpError(400, `${name} is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw new HttpError(400, `${name} must be a string`);
  if (v.length > (options.max ?? 500)) throw new HttpError(400, `${name} is longer than ${options.max ?? 500} characters`);
  return v;
}

export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const { config } = options;
  const settings = config.console ?? { port: 9470, host: '127.0.0.1', tokens: [] };
  const tokens = settings.tokens;
  const host = options.host ?? settings.host;
  const log = options.logger.child({ component: 'console' });
  const assets = loadAssets();
  const pool = createPool(config.databaseUrl, log, { max: 4, applicationName: 'outbox-console' });
  const data = new ConsoleData({ config, pool, logger: log });
  const jobs = new Jobs({ logger: log, env: options.env ?? process.env, ...(options.outboxCommand ? { command: options.outboxCommand } : {}) });
  const target = `${dbTarget(config.databaseUrl)} · ${config.schema}`;
  const actionsConfigured = tokens.length > 0;
  const loopbackOnly = isLoopback(host);

  const page = (res: ServerResponse, status: number, p: Page, title: string, body: SafeHtml): void => {
    send(res, status, 'text/html; charset=utf-8', layout({ title, page: p, actionsConfigured, target, body }).value);
  };

  /** The actor of an action, or an HttpError (401/403/415) that names why it is refused. */
  const authorize = (req: IncomingMessage): Actor => {
    if (!actionsConfigured) throw new HttpError(403, 'actions are disabled: OUTBOX_CONSOLE_TOKEN is not set on the server');
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') throw new HttpError(403, `cross-origin request refused (Sec-Fetch-Site: ${String(site)})`);
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let originHost: string | undefined;
      try {
        originHost = new URL(origin).host;
      } catch {
        originHost = undefined;
      }
      if (originHost !== req.headers.host) throw new HttpError(403, `cross-origin request refused (Origin: ${origin})`);
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
    if (type !== 'application/json') throw new HttpError(415, 'actions take a JSON body (Content-Type: application/json)');
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (!m) throw new HttpError(401, 'a token is required for actions (enter OUTBOX_CONSOLE_TOKEN in the page)', { 'WWW-Authenticate': 'Bearer realm="outbox console"' });
    const holder = matchToken(tokens, m[1]!);
    if (!holder) throw new HttpError(401, 'the token is not valid', { 'WWW-Authenticate': 'Bearer realm="outbox console", error="invalid_token"' });
    const rawUser = req.headers['x-outbox-user'];
    const user = typeof rawUser === 'string' ? rawUser.trim() : undefined;
    if (user !== undefined && user !== '' && !/^[\p{L}\p{N} _.@'-]{1,64}$/u.test(user))
      throw new HttpError(400, "X-Outbox-User must be a name of at most 64 letters, digits, spaces and _ . @ ' -");
    return user ? { token: holder.name, user, by: `${user} (token ${holder.name})` } : { token: holder.name, by: `token ${holder.name}` };
  };

  const withClient = async <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      if (!isOutboxError(err)) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  };

  const actions: Record<string, (body: Record<string, unknown>, who: Actor, req: IncomingMessage) => Promise<{ status: number; body: unknown }>> = {
    '/api/parked/retry': async (body, who) => {
      const eventId = stringField(body, 'eventId', { required: true })!;
      if (!UUID.test(eventId)) throw new HttpError(400, `eventId must be a UUID, got "${eventId}"`);
      const row = await withClient((c) => retryParked(c, config.schema, eventId.toLowerCase()));
      data.invalidateOverview();
      log.info(
        { action: 'retry', eventId, aggregate: `${String(row.aggregate_type)}/${String(row.aggregate_id)}`, by: who.token, user: who.user },
        `console: parked event released for retry by ${who.by}`,
      );
      return { status: 200, body: { action: 'retry', by: who.by, ...row } };
    },
    '/api/parked/skip': async (body, who) => {
      const eventId = stringField(body, 'eventId', { required: true })!;
      if (!UUID.test(eventId)) throw new HttpError(400, `eventId must be a UUID, got "${eventId}"`);
      const reason = stringField(body, 'reason', { max: 500 });
      const note = `${reason ? `${reason}; ` : ''}by ${who.by} in the console`;
      const row = await withClient((c) => skipParked(c, config.schema, eventId.toLowerCase(), note));
      data.invalidateOverview();
      // An operator decision that changes what consumers see: logged at warn, as by `outbox parked skip`.
      log.warn(
        {
          action: 'skip',
          eventId,
          aggregate: `${String(row.aggregate_type)}/${String(row.aggregate_id)}`,
          version: row.aggregate_version,
          reason: row.park_reason,
          by: who.token,
          user: who.user,
        },
        `console: parked event skipped (marked delivered without publishing) by ${who.by}`,
      );
      return { status: 200, body: { action: 'skip', by: who.by, ...row } };
    },
    '/api/projections/rebuild': async (body, who) => {
      const projection = stringField(body, 'projection', { required: true, max: 63 })!;
      const known = await data.projections();
      const p = known.find((x) => x.name === projection);
      if (!p) throw new HttpError(404, `no projection named "${projection}" has run against this database`);
      const recent = p.building.find((g) => Date.now() - Date.parse(g.updatedAt ?? g.createdAt) < 120_000);
      if (recent) {
        return {
          status: 409,
          body: {
            error: `a rebuild of ${projection} is in progress (generation ${recent.generation}, last progress ${recent.updatedAt ?? recent.createdAt}); starting another would drop its shadow`,
          },
        };
      }
      const started = jobs.startRebuild(projection, who.by);
      if (!started.started) return { status: 409, body: { error: started.reason } };
      log.warn(
        { action: 'rebuild', projection, job: started.job.id, pid: started.job.pid, by: who.token, user: who.user },
        `console: rebuild of ${projection} started by ${who.by}`,
      );
      return { status: 202, body: { action: 'rebuild', by: who.by, job: started.job } };
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const hostHeader = req.headers.host ?? '';
    if (loopbackOnly && !isLoopback(hostOf(hostHeader))) {
      throw new HttpError(421, `this console answers to loopback host names only (got Host: ${hostHeader || 'none'})`);
    }
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const route = url.pathname;

    if (req.method === 'POST') {
      const action = actions[route];
      if (!action) throw new HttpError(404, `no action ${route}`);
      let who: Actor;
      try {
        who = authorize(req);
      } catch (err) {
        if (err instanceof HttpError) {
          log.warn({ action: route, status: err.status, remote: req.socket.remoteAddress, origin: req.headers.origin }, `console: action refused: ${err.message}`);
        }
        throw err;
      }
      const body = await readBody(req);
      const result = await action(body, who, req);
      return sendJson(res, result.status, result.body);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'method not allowed', { Allow: 'GET, HEAD, POST' });

    const asset = assets.get(route);
    if (asset) return send(res, 200, asset.type, asset.body, { 'Cache-Control': 'no-cache' });

    switch (route) {
      case '/':
        return page(res, 200, 'overview', 'Overview', overviewPage(await data.overview()));
      case '/api/overview':
        return sendJson(res, 200, { ...(await data.overview()), refreshSeconds: options.refreshSeconds ?? 5 });
      case '/parked':
        return page(res, 200, 'parked', 'Parked events', parkedPage(await data.parked(), actionsConfigured));
      case '/api/parked':
        return sendJson(res, 200, await data.parked());
      case '/projections': {
        let items: Awaited<ReturnType<ConsoleData['projections']>> | { error: string };
        try {
          items = await data.projections();
        } catch (err) {
          items = { error: redact(errorMessage(err)) };
        }
        return page(res, 200, 'projections', 'Projections', projectionsPage(items, jobs.rebuilds(), actionsConfigured));
      }
      case '/api/projections':
        return sendJson(res, 200, { projections: await data.projections(), rebuilds: jobs.rebuilds() });
      case '/audit':
      case '/api/audit': {
        const type = (url.searchParams.get('type') ?? '').trim();
        const id = url.searchParams.get('id') ?? '';
        if (type.length > 200 || id.length > 500) throw new HttpError(400, 'type or id too long');
        const types = await data.aggregateTypes().catch(() => []);
        let result: Awaited<ReturnType<ConsoleData['audit']>>;
        let matches: Awaited<ReturnType<ConsoleData['findAggregates']>> | undefined;
        if (type !== '' && id !== '') result = await data.audit(type, id);
        if (type !== '' && !result) matches = await data.findAggregates(type, id);
        if (route === '/api/audit') return sendJson(res, result ? 200 : 404, result ?? { error: `no events for ${type}/${id}`, matches: matches ?? [] });
        return page(
          res,
          200,
          'audit',
          result ? `${type}/${id}` : 'Audit',
          auditPage({ type, id, types, ...(result ? { result } : {}), ...(matches ? { matches } : {}), proofs: settings.checkpoints !== undefined }),
        );
      }
      case '/audit/proof': {
        if (settings.checkpoints === undefined) throw new HttpError(404, 'no checkpoints are configured (OUTBOX_CONSOLE_CHECKPOINTS)');
        const type = url.searchParams.get('type') ?? '';
        const id = url.searchParams.get('id') ?? '';
        const version = url.searchParams.get('version') ?? '';
        if (type === '' || id === '' || type.length > 200 || id.length > 500) throw new HttpError(400, 'type and id are required');
        if (!/^[1-9][0-9]{0,14}$/.test(version)) throw new HttpError(400, 'version must be a positive whole number');
        const proof = await jobs.prove({ type, id, version: Number(version), checkpoints: settings.checkpoints });
        if (!proof.ok) return page(res, 502, 'audit', 'Proof', messagePage(`No proof for ${type}/${id} version ${version}`, proof.error));
        const file = `proof-${type}-${id}-v${version}.json`.replace(/[^A-Za-z0-9._-]/g, '_');
        return send(res, 200, 'application/json; charset=utf-8', proof.proof, { 'Content-Disposition': `attachment; filename="${file}"` });
      }
      case '/healthz':
        return sendJson(res, 200, { status: 'ok' });
      default:
        throw new HttpError(404, `no page ${route}`);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : isOutboxError(err, 'NOT_FOUND') ? 409 : isOutboxError(err, 'USAGE') ? 400 : 500;
      const message = redact(errorMessage(err));
      if (status >= 500) log.error({ err, url: req.url }, `console: ${req.method ?? ''} ${req.url ?? ''} failed: ${message}`);
      else log.debug({ url: req.url, status }, message);
      if (res.headersSent) return void res.destroy();
      const headers = err instanceof HttpError ? err.headers : {};
      const wantsJson = (req.url ?? '').startsWith('/api/') || req.method === 'POST';
      if (wantsJson) return sendJson(res, status, { error: message }, headers);
      send(
        res,
        status,
        'text/html; charset=utf-8',
        layout({ title: 'Error', page: 'overview', actionsConfigured, target, body: messagePage(`Error ${status}`, message) }).value,
        headers,
      );
    });
  });
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 120_000;

  const port = options.port ?? settings.port;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void =>
      reject(new OutboxError('CONFIG_INVALID', `the console port ${host}:${port} cannot be opened: ${err.code ?? err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  }).catch(async (err: unknown) => {
    await pool.end().catch(() => undefined);
    throw err;
  });
  const bound = (server.address() as AddressInfo).port;
  const untrack = trackRunning('console', `${host}:${bound}`);
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  log.info({ url, actions: actionsConfigured ? tokens.map((t) => t.name) : 'off' }, `console on ${url}${actionsConfigured ? '' : ' (read-only: OUTBOX_CONSOLE_TOKEN is not set)'}`);
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
