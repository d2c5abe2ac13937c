// @ts-check
// The HTTP interface, on node:http alone:
//   POST /orders                 {customer_id, currency, order_id?}           201 + Location
//   PUT  /orders/:id/lines       {lines: [{sku, quantity, unit_price_cents}]}  If-Match
//   POST /orders/:id/cancel      {reason}                                      If-Match
//   GET  /orders/:id                                                           If-None-Match -> 304
//   GET  /orders/:id/history     Accept: application/json | text/csv, else 406
// Every answer about an order carries its version as a strong ETag ("3"); If-Match is the version the
// client last saw and becomes the append's expected version (412 + the current ETag on a mismatch).
// Writes need X-Actor (who); X-Request-Id (or a generated one) is echoed and becomes the events'
// correlation id; a W3C traceparent header, when sent, gives the trace id.
import { randomUUID } from 'node:crypto';
import { newTraceId } from './service.js';

/** @typedef {import('node:http').IncomingMessage} Req @typedef {import('node:http').ServerResponse} Res */

class HttpError extends Error {
  /** @param {number} status @param {string} message @param {string} [field] */
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

const invalid = (/** @type {string} */ field, /** @type {string} */ problem) => new HttpError(400, `${field} ${problem}`, field);

const ID = /^[A-Za-z0-9_-]{1,64}$/;
const HISTORY_TYPES = ['application/json', 'text/csv'];
const MAX_BODY = 256 * 1024;

/**
 * The supported type the Accept header prefers (q-values, then the more specific range), or undefined (406).
 * @param {string | undefined} accept @param {string[]} supported
 */
export function negotiate(accept, supported) {
  if (accept === undefined || accept.trim() === '') return supported[0];
  let best;
  let bestQ = 0;
  let bestSpecificity = -1;
  for (const part of accept.split(',')) {
    const [range = '', ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) : 1;
    if (!Number.isFinite(q) || q <= 0) continue;
    const [type, sub] = range.split('/');
    for (const candidate of supported) {
      const [ct, cs] = candidate.split('/');
      const specificity = type === ct && sub === cs ? 2 : type === ct && sub === '*' ? 1 : type === '*' && sub === '*' ? 0 : -1;
      if (specificity < 0) continue;
      if (q > bestQ || (q === bestQ && specificity > bestSpecificity)) {
        best = candidate;
        bestQ = q;
        bestSpecificity = specificity;
      }
    }
  }
  return best;
}

/** @param {string | undefined} header @returns {number | undefined} */
function parseIfMatch(header) {
  if (header === undefined) return undefined;
  const m = /^\s*"(\d{1,15})"\s*$/.exec(header);
  if (!m) throw invalid('If-Match', `must be the ETag of the order, e.g. "3" (quotes included), got ${JSON.stringify(header)}`);
  return Number(m[1]);
}

/** @param {Req} req @returns {Promise<Record<string, unknown>>} */
async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `body larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw invalid('body', 'must be a JSON object');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid('body', 'must be a JSON object');
  return value;
}

/** @param {Record<string, unknown>} body @param {string} field @param {number} [max] */
function text(body, field, max = 200) {
  const v = body[field];
  if (typeof v !== 'string' || v.trim() === '') throw invalid(field, 'is required (a non-empty string)');
  if (v.length > max) throw invalid(field, `must be at most ${max} characters`);
  return v;
}

/** @param {unknown} value @returns {import('./order.js').OrderLine[]} */
function parseLines(value) {
  if (!Array.isArray(value)) throw invalid('lines', 'is required (a list of {sku, quantity, unit_price_cents})');
  if (value.length > 100) throw invalid('lines', 'must have at most 100 lines');
  return value.map((l, i) => {
    if (typeof l !== 'object' || l === null || Array.isArray(l)) throw invalid(`lines[${i}]`, 'must be an object {sku, quantity, unit_price_cents}');
    const sku = text(l, 'sku', 64);
    if (!Number.isInteger(l.quantity) || l.quantity < 1 || l.quantity > 10_000) throw invalid(`lines[${i}].quantity`, 'must be a whole number from 1 to 10000');
    if (!Number.isInteger(l.unit_price_cents) || l.unit_price_cents < 0 || l.unit_price_cents > 100_000_000)
      throw invalid(`lines[${i}].unit_price_cents`, 'must be a whole number of cents from 0 to 100000000');
    return { sku, quantity: l.quantity, unit_price_cents: l.unit_price_cents };
  });
}

/** @param {unknown} v */
const csvField = (v) => {
  const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

const CSV_COLUMNS = ['version', 'occurred_at', 'event_type', 'schema_version', 'actor_id', 'request_id', 'trace_id', 'event_id', 'payload'];

/**
 * The request handler.
 * @param {import('./service.js').OrdersService} service
 * @param {{ log?: (line: string) => void }} [options]
 */
export function createHandler(service, options = {}) {
  const log = options.log ?? (() => undefined);
  /** @param {Req} req @param {Res} res */
  return async (req, res) => {
    const given = headerOf(req, 'x-request-id');
    const requestId = given !== undefined && /^[\x21-\x7e]{1,128}$/.test(given) ? given : randomUUID();
    res.setHeader('X-Request-Id', requestId);
    /** @param {number} status @param {unknown} body @param {number} [etag] @param {Record<string, string>} [headers] */
    const send = (status, body, etag, headers = {}) => {
      if (etag !== undefined) res.setHeader('ETag', `"${etag}"`);
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      if (body === undefined) return void res.writeHead(status).end();
      const isText = typeof body === 'string';
      res.writeHead(status, { 'Content-Type': isText ? (headers['Content-Type'] ?? 'text/plain; charset=utf-8') : 'application/json; charset=utf-8' });
      res.end(isText ? body : JSON.stringify(body));
    };
    /** @type {string | undefined} the order the request is about, once known to be a valid id */
    let id;
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const parts = url.pathname.split('/').filter((p) => p !== '');
      if (parts[0] !== 'orders' || parts.length > 3) throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
      const segment = parts[1] !== undefined ? decodeSegment(parts[1]) : undefined;
      if (segment !== undefined && !ID.test(segment)) throw invalid('order id', 'must be 1 to 64 letters, digits, _ or -');
      id = segment;
      if (given !== undefined && given !== requestId) throw invalid('X-Request-Id', 'must be 1 to 128 visible ASCII characters');
      const route = `${req.method} /orders${id !== undefined ? '/:id' : ''}${parts[2] !== undefined ? `/${parts[2]}` : ''}`;
      const meta = () => {
        const actorId = headerOf(req, 'x-actor');
        if (actorId === undefined) throw invalid('X-Actor', 'header is required: who makes the change (e.g. user:42)');
        const traceparent = headerOf(req, 'traceparent');
        const m = traceparent ? /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent) : null;
        return { actorId, requestId, traceId: m?.[1] ?? newTraceId() };
      };
      /** @param {{ status: number, etag?: number, body: unknown }} o @param {Record<string, string>} [headers] */
      const answer = (o, headers) => send(o.status, o.body, o.etag, headers);

      switch (route) {
        case 'POST /orders': {
          const body = await readJson(req);
          const orderId = body.order_id === undefined ? `ord_${randomUUID().replace(/-/g, '').slice(0, 20)}` : text(body, 'order_id', 64);
          if (!ID.test(orderId)) throw invalid('order_id', 'must be 1 to 64 letters, digits, _ or -');
          const customerId = text(body, 'customer_id', 64);
          const currency = body.currency;
          if (typeof currency !== 'string' || !/^[A-Z]{3}$/.test(currency)) throw invalid('currency', 'must be an ISO 4217 code such as EUR');
          const o = await service.place({ orderId, customerId, currency }, meta());
          return answer(o, o.status === 201 ? { Location: `/orders/${orderId}` } : {});
        }
        case 'PUT /orders/:id/lines': {
          const ifMatch = parseIfMatch(headerOf(req, 'if-match'));
          const lines = parseLines((await readJson(req)).lines);
          return answer(await service.setLines(/** @type {string} */ (id), lines, ifMatch, meta()));
        }
        case 'POST /orders/:id/cancel': {
          const ifMatch = parseIfMatch(headerOf(req, 'if-match'));
          const reason = text(await readJson(req), 'reason');
          return answer(await service.cancel(/** @type {string} */ (id), reason, ifMatch, meta()));
        }
        case 'GET /orders/:id': {
          const o = await service.get(/** @type {string} */ (id));
          if (o.status === 200 && headerOf(req, 'if-none-match') === `"${o.etag}"`) return send(304, undefined, o.etag);
          return answer(o);
        }
        case 'GET /orders/:id/history': {
          const events = await service.history(/** @type {string} */ (id));
          if (events.length === 0) throw new HttpError(404, `order ${id} not found`);
          const etag = events[events.length - 1].version;
          const type = negotiate(headerOf(req, 'accept'), HISTORY_TYPES);
          if (!type) return send(406, { error: `cannot answer with ${headerOf(req, 'accept')}`, supported: HISTORY_TYPES }, etag);
          if (type === 'application/json') return send(200, { order_id: id, events }, etag, { Vary: 'Accept' });
          const csv = [CSV_COLUMNS.join(','), ...events.map((e) => CSV_COLUMNS.map((c) => csvField(e[c])).join(','))].join('\r\n') + '\r\n';
          return send(200, csv, etag, { Vary: 'Accept', 'Content-Type': 'text/csv; charset=utf-8' });
        }
        default:
          if (['/orders', '/orders/:id', '/orders/:id/lines', '/orders/:id/cancel', '/orders/:id/history'].includes(route.slice(route.indexOf(' ') + 1)))
            throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}`);
          throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
      }
    } catch (err) {
      if (err instanceof HttpError) {
        // An answer about an existing order carries its ETag, errors included.
        const version = id !== undefined && err.status !== 404 ? await service.versionOf(id).catch(() => 0) : 0;
        return send(err.status, { error: err.message, ...(err.field ? { field: err.field } : {}) }, version > 0 ? version : undefined);
      }
      log(`request ${requestId} ${req.method} ${req.url} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      return send(500, { error: 'internal error', request_id: requestId });
    }
  };
}

/** @param {string} segment */
function decodeSegment(segment) {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw invalid('order id', 'is not a valid URL path segment');
  }
}

/** @param {Req} req @param {string} name */
function headerOf(req, name) {
  const v = req.headers[name];
  const s = Array.isArray(v) ? v.join(', ') : v;
  return s === undefined || s.trim() === '' ? undefined : s.trim();
}
