import type pg from 'pg';
import type { KafkaSettings, OutboxConfig, RegistrySettings } from '../core/config';
import { describeError, probeKafka } from '../core/admin-server';
import { isOutboxError, OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { connectClient, createPool, dbTarget } from '../core/pg';
import { redact } from '../core/redact';
import { registryRequest, type RegistryRequest } from '../core/registry';

/** Turn a pg failure into an OutboxError that names the server and, for a missing table, the fix. */
export function pgError(err: unknown, config: Pick<OutboxConfig, 'databaseUrl' | 'schema'>, doing = 'query'): OutboxError {
  if (isOutboxError(err)) return err;
  const e = err as { code?: string; message?: string };
  const target = dbTarget(config.databaseUrl);
  if (e?.code === '42P01' || e?.code === '3F000') {
    return new OutboxError('DB_REJECTED', `PostgreSQL at ${target}: ${redact(e.message ?? '')} in schema "${config.schema}" (run "outbox migrate" first?)`, { cause: err });
  }
  if (typeof e?.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) && !/^(08|57P|53)/.test(e.code) && e.code !== '28P01' && e.code !== '28000' && e.code !== '3D000') {
    return new OutboxError('DB_REJECTED', `PostgreSQL at ${target} rejected the ${doing}: ${redact(e.message ?? '')}`, { cause: err });
  }
  if (e?.code === '28P01' || e?.code === '28000' || e?.code === '3D000') {
    return new OutboxError('DB_UNAVAILABLE', `PostgreSQL at ${target} refused the connection: ${redact(e.message ?? '')}`, { cause: err });
  }
  return new OutboxError('DB_UNAVAILABLE', `PostgreSQL at ${target} is unreachable: ${redact(describeError(err))}`, { cause: err });
}

/** A pool that is ended after `fn`; connection failures become DB_UNAVAILABLE naming the server. */
export async function withPool<T>(config: OutboxConfig, logger: Logger, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = createPool(config.databaseUrl, logger, { max: 2, applicationName: 'outbox-cli' });
  try {
    return await fn(pool);
  } catch (err) {
    throw pgError(err, config);
  } finally {
    await pool.end().catch(() => undefined);
  }
}

/** A single connection (migrations, transactions) that is closed after `fn`. */
export async function withClient<T>(config: OutboxConfig, logger: Logger, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  let client: pg.Client;
  try {
    client = await connectClient(config.databaseUrl, logger, 'outbox-cli');
  } catch (err) {
    throw pgError(err, config, 'connection');
  }
  try {
    return await fn(client);
  } catch (err) {
    throw pgError(err, config);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Fails with KAFKA_UNAVAILABLE naming the brokers unless a fresh admin client can describe the cluster. */
export async function requireKafka(settings: KafkaSettings, logger: Logger, timeoutMs = 5000): Promise<void> {
  try {
    await probeKafka(settings, timeoutMs, logger);
  } catch (err) {
    throw new OutboxError('KAFKA_UNAVAILABLE', `Kafka at ${settings.brokers.join(',')} is unreachable: ${redact(describeError(err))}`, { cause: err });
  }
}

/** A registry request whose transport failure becomes REGISTRY_UNAVAILABLE naming the URL. */
export async function registryCall(settings: RegistrySettings, request: RegistryRequest): Promise<{ status: number; body: unknown }> {
  try {
    return await registryRequest(settings, { timeoutMs: 5000, ...request });
  } catch (err) {
    throw new OutboxError('REGISTRY_UNAVAILABLE', `schema registry at ${settings.url} is unreachable: ${redact(describeError(err))}`, { cause: err });
  }
}

/** Fails with REGISTRY_UNAVAILABLE unless GET /subjects answers 200; returns the subjects. */
export async function requireRegistry(settings: RegistrySettings, timeoutMs = 5000): Promise<string[]> {
  const res = await registryCall(settings, { method: 'GET', path: '/subjects', timeoutMs });
  if (res.status === 401 || res.status === 403) {
    throw new OutboxError('REGISTRY_UNAVAILABLE', `schema registry at ${settings.url} refused the credentials (HTTP ${res.status}; check SCHEMA_REGISTRY_USERNAME/PASSWORD)`);
  }
  if (res.status !== 200 || !Array.isArray(res.body)) {
    throw new OutboxError(
      'REGISTRY_UNAVAILABLE',
      `schema registry at ${settings.url} answered GET /subjects with HTTP ${res.status} (is SCHEMA_REGISTRY_URL the ccompat API, e.g. .../apis/ccompat/v7?)`,
    );
  }
  return (res.body as unknown[]).map(String);
}
