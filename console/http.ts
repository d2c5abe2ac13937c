import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { OutboxError } from '../core/errors';
import { redact } from '../core/redact';

/**
 * The console's HTTP plumbing: the security headers every answer carries, sending HTML/JSON/assets,
 * reading a JSON body, and `HttpError` (a refusal with its status, as the client will see it).
 */

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

const MAX_BODY = 16 * 1024;

export type Assets = Map<string, { body: Buffer; type: string }>;

/** The console's static files, by route (from console/assets, or from the source tree when running from dist/). */
export function loadAssets(): Assets {
  const dirs = [path.join(__dirname, 'assets'), path.join(__dirname, '..', '..', 'console', 'assets')];
  const out: Assets = new Map();
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

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'Content-Type': type, ...headers });
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  send(res, status, 'application/json; charset=utf-8', `${redact(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)))}\n`, headers);
}

export async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
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

export function stringField(body: Record<string, unknown>, name: string, options: { required?: boolean; max?: number } = {}): string | undefined {
  const v = body[name];
  if (v === undefined || v === null || v === '') {
    if (options.required) throw new HttpError(400, `${name} is required`);
    return undefined;
  }
  if (typeof v !== 'string') throw new HttpError(400, `${name} must be a string`);
  if (v.length > (options.max ?? 500)) throw new HttpError(400, `${name} is longer than ${options.max ?? 500} characters`);
  return v;
}
