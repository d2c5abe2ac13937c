import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import type { KafkaSettings, RegistrySettings } from './config';
import { errorMessage, OutboxError } from './errors';
import { createKafka } from './kafka';
import { silentLogger, type Logger } from './logger';
import { redact } from './redact';
import { registryRequest } from './registry';

/**
 * The admin HTTP port of a long-running component (relay, projector):
 *   GET /metrics  Prometheus text format of `registry`
 *   GET /healthz  200 while the process is alive and its event loop answers
 *   GET /readyz   200 when every readiness check passes, else 503 with JSON naming the failing checks
 */
export interface CheckResult {
  ok: boolean;
  error?: string;
  /** Milliseconds the check took. */
  ms?: number;
}

export interface Readiness {
  ok: boolean;
  checks: Record<string, CheckResult>;
}

export type ReadinessFn = () => Promise<Readiness>;

export interface AdminServerOptions {
  port: number;
  /** Default 127.0.0.1; use 0.0.0.0 in a container so that the orchestrator can reach it. */
  host?: string;
  registry: Registry;
  readiness: ReadinessFn;
  logger: Logger;
}

export interface AdminServer {
  /** The bound port (the OS-chosen one when `port` was 0). */
  port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${redact(JSON.stringify(value))}\n`);
}

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const log = options.logger.child({ component: 'admin-server' });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return sendJson(res, 405, { error: 'method not allowed' });
    }
    switch (path) {
      case '/metrics': {
        const text = await options.registry.metrics();
        return send(res, 200, options.registry.contentType, text);
      }
      case '/healthz':
        return sendJson(res, 200, { status: 'ok' });
      case '/readyz': {
        let result: Readiness;
        try {
          result = await options.readiness();
        } catch (err) {
          result = { ok: false, checks: { readiness: { ok: false, error: errorMessage(err) } } };
        }
        const failing = Object.entries(result.checks).filter(([, c]) => !c.ok).map(([name]) => name);
        const ok = result.ok && failing.length === 0;
        if (!ok) log.debug({ failing }, 'not ready');
        return sendJson(res, ok ? 200 : 503, { status: ok ? 'ready' : 'not ready', ...(ok ? {} : { failing }), checks: result.checks });
      }
      default:
        return sendJson(res, 404, { error: `no such endpoint ${path ?? ''}; try /metrics, /healthz or /readyz` });
    }
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.warn({ err }, `admin request ${req.url ?? ''} failed: ${errorMessage(err)}`);
      if (!res.headersSent) sendJson(res, 500, { error: errorMessage(err) });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(new OutboxError('CONFIG_INVALID', `the admin port ${host}:${options.port} cannot be opened: ${err.code ?? err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(options.port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port, host }, `admin server on http://${host.includes(':') ? `[${host}]` : host}:${port} (/metrics, /healthz, /readyz)`);
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Runs `fn` with a time limit; the result names the failure instead of throwing. */
export async function runCheck(fn: (signal: AbortSignal) => Promise<unknown>, timeoutMs: number): Promise<CheckResult> {
  const started = Date.now();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(new Error(`no answer within ${timeoutMs}ms`));
    }, timeoutMs);
  });
  try {
    await Promise.race([fn(controller.signal), timeout]);
    return { ok: true, ms: Date.now() - started };
  } catch (err) {
    return { ok: false, error: redact(describeError(err)), ms: Date.now() - started };
  } finally {
    clearTimeout(timer);
  }
}

/** The most telling message of an error chain (fetch's "fetch failed" hides the reason in `cause`). */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; i < 4 && e !== undefined && e !== null; i++) {
    const m = errorMessage(e);
    const code = (e as { code?: unknown }).code;
    const text = m !== '' ? m : typeof code === 'string' ? code : '';
    if (text !== '' && !parts.some((p) => p.includes(text))) parts.push(text);
    e = (e as { cause?: unknown }).cause;
  }
  const errors = (err as { errors?: unknown[] }).errors; // AggregateError (e.g. ECONNREFUSED on ::1 and 127.0.0.1)
  if (Array.isArray(errors) && errors.length > 0 && parts.length <= 1) parts.push(errorMessage(errors[0]));
  return parts.join(': ') || 'unknown error';
}

export interface ReadinessChecksOptions {
  /** PostgreSQL: `SELECT 1` on a pooled connection. */
  pool?: Pick<pg.Pool, 'query'>;
  /** Kafka: a short-lived admin client (no retries) connects and describes the cluster. */
  kafka?: KafkaSettings;
  /** Schema registry: GET /subjects answers 200. */
  registry?: RegistrySettings;
  /** Time limit of each check; default 2000 ms. */
  timeoutMs?: number;
  /** kafkajs diagnostics of the probe (debug); default silent. */
  logger?: Logger;
}

/** Probes for /readyz (and `outbox status`): each named dependency is checked in parallel with a time limit. */
export function readinessChecks(options: ReadinessChecksOptions): ReadinessFn {
  const timeoutMs = options.timeoutMs ?? 2000;
  const probes: Record<string, (signal: AbortSignal) => Promise<unknown>> = {};
  if (options.pool) {
    const pool = options.pool;
    probes.postgres = () => pool.query('SELECT 1');
  }
  if (options.kafka) probes.kafka = () => probeKafka(options.kafka!, timeoutMs, options.logger ?? silentLogger());
  if (options.registry) {
    const registry = options.registry;
    probes.registry = async () => {
      const res = await registryRequest(registry, 'GET', '/subjects', undefined, { timeoutMs });
      if (res.status !== 200) throw new Error(`GET /subjects answered HTTP ${res.status}`);
    };
  }
  return async () => {
    const names = Object.keys(probes);
    const results = await Promise.all(names.map((name) => runCheck(probes[name]!, timeoutMs)));
    const checks: Record<string, CheckResult> = {};
    names.forEach((name, i) => {
      checks[name] = results[i]!;
    });
    return { ok: results.every((r) => r.ok), checks };
  };
}

/** Connect a fresh admin client without retries, describe the cluster, disconnect. Returns the broker count. */
export async function probeKafka(settings: KafkaSettings, timeoutMs: number, logger: Logger): Promise<number> {
  const kafka = createKafka(
    { ...settings, connectionTimeoutMs: Math.min(settings.connectionTimeoutMs, timeoutMs), requestTimeoutMs: Math.min(settings.requestTimeoutMs, timeoutMs) },
    logger,
    'probe',
    { retries: 0 },
  );
  const admin = kafka.admin({ retry: { retries: 0 } });
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
