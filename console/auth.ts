import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ConsoleToken } from '../core/config';
import { HttpError } from './http';

/**
 * Who may ask the console what: the loopback Host check (no DNS rebinding) and the authorization of an
 * action (same-origin only, a JSON body, `Authorization: Bearer <token>` and an optional `X-Outbox-User`).
 */

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

export function isLoopback(host: string): boolean {
  return LOOPBACK_HOSTS.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** `host` of a Host header value (`[::1]:9470` → `[::1]`, `localhost:9470` → `localhost`). */
function hostOf(header: string): string {
  if (header.startsWith('[')) return header.slice(0, header.indexOf(']') + 1);
  return header.split(':')[0] ?? header;
}

/** A console bound to a loopback address answers only requests that name a loopback host (421 otherwise). */
export function checkHost(req: IncomingMessage, loopbackOnly: boolean): void {
  const hostHeader = req.headers.host ?? '';
  if (loopbackOnly && !isLoopback(hostOf(hostHeader))) {
    throw new HttpError(421, `this console answers to loopback host names only (got Host: ${hostHeader || 'none'})`);
  }
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

export interface Actor {
  token: string;
  user?: string;
  /** `user (token name)` or `token name`. */
  by: string;
}

/** The actor of an action, or an HttpError (401/403/415) that names why it is refused. */
export function authorize(req: IncomingMessage, tokens: ConsoleToken[]): Actor {
  if (tokens.length === 0) throw new HttpError(403, 'actions are disabled: OUTBOX_CONSOLE_TOKEN is not set on the server');
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
}
