import type { RegistrySettings } from './config';

export interface RegistryRequest {
  method: string;
  /** Path under the registry URL: `/subjects`. */
  path: string;
  /** Sent as JSON. */
  body?: unknown;
  /** Default 10 s. */
  timeoutMs?: number;
}

/** Plain fetch against the registry's REST API (config, compatibility) with the configured auth. */
export async function registryRequest(settings: RegistrySettings, request: RegistryRequest): Promise<{ status: number; body: unknown }> {
  const { method, path: pathname, body } = request;
  const headers: Record<string, string> = { Accept: 'application/vnd.schemaregistry.v1+json, application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/vnd.schemaregistry.v1+json';
  if (settings.auth) headers.Authorization = `Basic ${Buffer.from(`${settings.auth.username}:${settings.auth.password}`).toString('base64')}`;
  const res = await fetch(`${settings.url}${pathname}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(request.timeoutMs ?? 10_000),
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
