import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Admin } from 'kafkajs';
import type pg from 'pg';
import type { Registry } from 'prom-client';
import type { KafkaSettings, RegistrySettings } from './config';
import { errorMessage, OutboxError } from './errors';
import { createKafka } from './kafka';
import type { LivenessStatus } from './lifecycle';
import { silentLogger, type Logger } from './logger';
import { redact } from './redact';
import { registryRequest } from './registry';

/**
 * The admin HTTP port of a long-running component (relay, projector):
 *   GET /metrics  Prometheus text format of `registry`
 *   GET /healthz  liveness: 200 while the event loop answers and (with `liveness`) the component's main
 *                 loop went round within its timeout, else 503 saying how long it has been stuck
 *   GET /readyz   200 when every readiness check passes, else 503 with JSON naming the failing checks
 */
/** Admin ports used when OUTBOX_ADMIN_PORT is not set (the admin server is on by default). */
export const DEFAULT_ADMIN_PORTS = { relay: 9464, projector: 9465 } as const;

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

/** The readiness probes; `close` (if any) releases what they keep open, such as a Kafka admin client. */
export type ReadinessFn = (() => Promise<Readiness>) & { close?(): Promise<void> };

export interface AdminServerOptions {
  port: number;
  /** Default 127.0.0.1; use 0.0.0.0 in a container so that the orchestrator can reach it. */
  host?: string;
  registry: Registry;
  readiness: ReadinessFn;
  /** The component's main-loop liveness (core/lifecycle.ts createLiveness); without it /healthz checks only that the process answers. */
  liveness?: { check(): LivenessStatus };
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
      case '/healthz': {
        const live = options.liveness?.check();
        if (!live) return sendJson(res, 200, { status: 'ok' });
        const body = { sinceProgressSeconds: Math.round(live.sinceProgressMs / 100) / 10, timeoutSeconds: live.timeoutMs / 1000 };
        if (live.ok) return sendJson(res, 200, { status: 'ok', ...body });
        log.warn(body, `liveness failing: the main loop has not gone round for ${body.sinceProgressSeconds}s (timeout ${body.timeoutSeconds}s)`);
        return sendJson(res, 503, {
          status: 'stuck',
          error: `the main loop has not made progress for ${body.sinceProgressSeconds}s (OUTBOX_LIVENESS_TIMEOUT ${body.timeoutSeconds}s)`,
          ...body,
        });
      }
      case '/readyz': {
        let result: Readiness;
        try {
          result = await options.readiness();
        } catch (err) {
          result = { ok: false, checks: { readiness: { ok: false, error: errorMessage(err) } } };
        }
        const failing = Object.entries(result.checks)
          .filter(([, c]) => !c.ok)
          .map(([name]) => name);
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
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await options.readiness.close?.().catch(() => undefined);
    },
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
  /** Kafka: one admin client, connected on the first probe and kept, describes the cluster (a Metadata request). */
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
  const kafka = options.kafka ? kafkaProbe(options.kafka, timeoutMs, options.logger ?? silentLogger()) : undefined;
  if (kafka) probes.kafka = () => kafka.probe();
  if (options.registry) {
    const registry = options.registry;
    probes.registry = async () => {
      const res = await registryRequest(registry, { method: 'GET', path: '/subjects', timeoutMs });
      if (res.status !== 200) throw new Error(`GET /subjects answered HTTP ${res.status}`);
    };
  }
  const readiness: ReadinessFn = async () => {
    const names = Object.keys(probes);
    const results = await Promise.all(names.map((name) => runCheck(probes[name]!, timeoutMs)));
    const checks: Record<string, CheckResult> = {};
    names.forEach((name, i) => {
      checks[name] = results[i]!;
    });
    return { ok: results.every((r) => r.ok), checks };
  };
  if (kafka) readiness.close = () => kafka.close();
  return readiness;
}

export interface KafkaProbe {
  /** Describe the cluster through the kept admin client; returns the broker count. */
  probe(): Promise<number>;
  /** Disconnect the admin client; later probes fail. */
  close(): Promise<void>;
}

/**
 * A Kafka readiness probe that keeps one admin client (no retries) connected between probes, so that a
 * probe every few seconds costs one Metadata request instead of a new client, connection and handshake.
 * When a probe fails on the kept client (the broker restarted, an idle connection was closed), it drops
 * the client and tries once more with a fresh one before reporting the failure.
 */
export function kafkaProbe(settings: KafkaSettings, timeoutMs: number, logger: Logger): KafkaProbe {
  const kafka = createKafka(
    { ...settings, connectionTimeoutMs: Math.min(settings.connectionTimeoutMs, timeoutMs), requestTimeoutMs: Math.min(settings.requestTimeoutMs, timeoutMs) },
    logger,
    'probe',
    { retries: 0 },
  );
  let kept: Admin | undefined;
  let connecting: Promise<Admin> | undefined;
  let closed = false;
  const drop = async (admin: Admin): Promise<void> => {
    if (kept === admin) kept = undefined;
    await admin.disconnect().catch(() => undefined);
  };
  const connect = (): Promise<Admin> => {
    connecting ??= (async () => {
      const admin = kafka.admin({ retry: { retries: 0 } });
      try {
        await admin.connect();
      } catch (err) {
        await admin.disconnect().catch(() => undefined);
        throw err;
      }
      if (closed) {
        await admin.disconnect().catch(() => undefined);
        throw new OutboxError('SHUTDOWN', 'the Kafka probe is closed');
      }
      kept = admin;
      return admin;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  };
  const describe = async (admin: Admin): Promise<number> => (await admin.describeCluster()).brokers.length;
  return {
    async probe() {
      if (closed) throw new OutboxError('SHUTDOWN', 'the Kafka probe is closed');
      const existing = kept;
      if (existing) {
        try {
          return await describe(existing);
        } catch {
          await drop(existing);
        }
      }
      const admin = await connect();
      try {
        return await describe(admin);
      } catch (err) {
        await drop(admin);
        throw err;
      }
    },
    async close() {
      closed = true;
      const admin = kept ?? (await connecting?.catch(() => undefined));
      if (admin) await drop(admin);
    },
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
