import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { RegistrySettings } from './config';

/** A client for the Confluent-compatible schema registry API at SCHEMA_REGISTRY_URL (Apicurio: /apis/ccompat/v7). */
export function createRegistry(settings: RegistrySettings): SchemaRegistry {
  return new SchemaRegistry({
    host: settings.url,
    ...(settings.auth ? { auth: settings.auth } : {}),
    retry: { retries: 2, initialRetryTimeInSecs: 0.2, maxRetryTimeInSecs: 2 },
  });
}

/** Plain fetch against the registry's REST API (config, compatibility) with the configured auth. */
export async function registryRequest(
  settings: RegistrySettings,
  method: string,
  pathname: string,
  body?: unknown,
  options: { timeoutMs?: number } = {},
): Promise<{ status: number; body: unknown }> {
  const headers: Record<string, string> = { Accept: 'application/vnd.schemaregistry.v1+json, application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/vnd.schemaregistry.v1+json';
  if (settings.auth) headers.Authorization = `Basic ${Buffer.from(`${settings.auth.username}:${settings.auth.password}`).toString('base64')}`;
  const res = await fetch(`${settings.url}${pathname}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    /* keep text */
  }
  return { status: res.status, body: parsed };
}
