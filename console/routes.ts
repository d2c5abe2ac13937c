import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConsoleSettings } from '../core/config';
import { errorMessage } from '../core/errors';
import type { Logger } from '../core/logger';
import { redact } from '../core/redact';
import type { Action } from './actions';
import { authorize, checkHost, type Actor } from './auth';
import type { ConsoleData } from './data';
import { layout, type Page, type SafeHtml } from './html';
import { HttpError, readBody, send, sendJson, type Assets } from './http';
import type { Jobs } from './jobs';
import { auditPage, messagePage, overviewPage, parkedPage, projectionsPage } from './pages';

/**
 * The console's routing: POSTs go to an action (console/actions.ts) once authorized, GET/HEAD to an asset
 * or to a page or API route of the table below. Everything else is an HttpError for the server to answer.
 */

/** What every page's frame shows: whether actions are configured, and the database target. */
export interface PageFrame {
  actionsConfigured: boolean;
  target: string;
}

export interface PageView {
  page: Page;
  title: string;
  body: SafeHtml;
  status?: number;
  headers?: Record<string, string>;
}

export function sendPage(res: ServerResponse, frame: PageFrame, view: PageView): void {
  send(res, view.status ?? 200, 'text/html; charset=utf-8', layout({ title: view.title, page: view.page, ...frame, body: view.body }).value, view.headers);
}

type Route = (url: URL, res: ServerResponse) => Promise<void>;

export interface PageRoutesOptions {
  data: ConsoleData;
  jobs: Jobs;
  settings: ConsoleSettings;
  frame: PageFrame;
  /** Seconds between overview refreshes in the browser. */
  refreshSeconds: number;
}

/** The pages and the read-only API, by path. */
export function pageRoutes({ data, jobs, settings, frame, refreshSeconds }: PageRoutesOptions): Record<string, Route> {
  const { actionsConfigured } = frame;
  const page = (res: ServerResponse, view: PageView): void => sendPage(res, frame, view);

  const audit =
    (api: boolean): Route =>
    async (url, res) => {
      const type = (url.searchParams.get('type') ?? '').trim();
      const id = url.searchParams.get('id') ?? '';
      if (type.length > 200 || id.length > 500) throw new HttpError(400, 'type or id too long');
      const types = await data.aggregateTypes().catch(() => []);
      let result: Awaited<ReturnType<ConsoleData['audit']>>;
      let matches: Awaited<ReturnType<ConsoleData['findAggregates']>> | undefined;
      if (type !== '' && id !== '') result = await data.audit(type, id);
      if (type !== '' && !result) matches = await data.findAggregates(type, id);
      if (api) return sendJson(res, result ? 200 : 404, result ?? { error: `no events for ${type}/${id}`, matches: matches ?? [] });
      return page(res, {
        page: 'audit',
        title: result ? `${type}/${id}` : 'Audit',
        body: auditPage({ type, id, types, ...(result ? { result } : {}), ...(matches ? { matches } : {}), proofs: settings.checkpoints !== undefined }),
      });
    };

  return {
    '/': async (_url, res) => page(res, { page: 'overview', title: 'Overview', body: overviewPage(await data.overview()) }),
    '/api/overview': async (_url, res) => sendJson(res, 200, { ...(await data.overview()), refreshSeconds }),
    '/parked': async (_url, res) => page(res, { page: 'parked', title: 'Parked events', body: parkedPage(await data.parked(), actionsConfigured) }),
    '/api/parked': async (_url, res) => sendJson(res, 200, await data.parked()),
    '/projections': async (_url, res) => {
      let items: Awaited<ReturnType<ConsoleData['projections']>> | { error: string };
      try {
        items = await data.projections();
      } catch (err) {
        items = { error: redact(errorMessage(err)) };
      }
      return page(res, { page: 'projections', title: 'Projections', body: projectionsPage(items, jobs.rebuilds(), actionsConfigured) });
    },
    '/api/projections': async (_url, res) => sendJson(res, 200, { projections: await data.projections(), rebuilds: jobs.rebuilds() }),
    '/audit': audit(false),
    '/api/audit': audit(true),
    '/audit/proof': async (url, res) => {
      if (settings.checkpoints === undefined) throw new HttpError(404, 'no checkpoints are configured (OUTBOX_CONSOLE_CHECKPOINTS)');
      const type = url.searchParams.get('type') ?? '';
      const id = url.searchParams.get('id') ?? '';
      const version = url.searchParams.get('version') ?? '';
      if (type === '' || id === '' || type.length > 200 || id.length > 500) throw new HttpError(400, 'type and id are required');
      if (!/^[1-9][0-9]{0,14}$/.test(version)) throw new HttpError(400, 'version must be a positive whole number');
      const proof = await jobs.prove({ type, id, version: Number(version), checkpoints: settings.checkpoints });
      if (!proof.ok) return page(res, { status: 502, page: 'audit', title: 'Proof', body: messagePage(`No proof for ${type}/${id} version ${version}`, proof.error) });
      const file = `proof-${type}-${id}-v${version}.json`.replace(/[^A-Za-z0-9._-]/g, '_');
      return send(res, 200, 'application/json; charset=utf-8', proof.proof, { 'Content-Disposition': `attachment; filename="${file}"` });
    },
    '/healthz': async (_url, res) => sendJson(res, 200, { status: 'ok' }),
  };
}

export interface RouterOptions {
  actions: Record<string, Action>;
  pages: Record<string, Route>;
  assets: Assets;
  tokens: ConsoleSettings['tokens'];
  /** Bound to a loopback address: answer only requests that name a loopback host. */
  loopbackOnly: boolean;
  log: Logger;
}

/** One request: host check, then an action (POST) or an asset, page or API route (GET, HEAD). */
export function router({ actions, pages, assets, tokens, loopbackOnly, log }: RouterOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const authorized = (req: IncomingMessage, route: string): Actor => {
    try {
      return authorize(req, tokens);
    } catch (err) {
      if (err instanceof HttpError) {
        log.warn({ action: route, status: err.status, remote: req.socket.remoteAddress, origin: req.headers.origin }, `console: action refused: ${err.message}`);
      }
      throw err;
    }
  };

  return async (req, res) => {
    checkHost(req, loopbackOnly);
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const route = url.pathname;

    if (req.method === 'POST') {
      const action = actions[route];
      if (!action) throw new HttpError(404, `no action ${route}`);
      const who = authorized(req, route);
      const body = await readBody(req);
      const result = await action(body, who);
      return sendJson(res, result.status, result.body);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'method not allowed', { Allow: 'GET, HEAD, POST' });

    const asset = assets.get(route);
    if (asset) return send(res, 200, asset.type, asset.body, { 'Cache-Control': 'no-cache' });
    const page = Object.hasOwn(pages, route) ? pages[route] : undefined;
    if (!page) throw new HttpError(404, `no page ${route}`);
    return page(url, res);
  };
}
