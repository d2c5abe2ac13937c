import type { RegistrySettings } from '../core/config';
import { errorMessage, OutboxError } from '../core/errors';
import { registryRequest } from '../core/registry';

/**
 * The few Confluent-compatible registry calls the schema code needs, on top of core/registry's
 * `registryRequest`. Unreachable registry, timeouts and 5xx answers throw OutboxError('REGISTRY_UNAVAILABLE')
 * (transient: callers retry); 4xx answers are returned for the caller to interpret.
 */

export interface RegistryAnswer {
  status: number;
  body: unknown;
}

export async function call(settings: RegistrySettings, method: string, pathname: string, body?: unknown): Promise<RegistryAnswer> {
  let res: RegistryAnswer;
  try {
    res = await registryRequest(settings, { method, path: pathname, body });
  } catch (err) {
    throw new OutboxError('REGISTRY_UNAVAILABLE', `schema registry ${method} ${pathname} failed: ${errorMessage(err)}`, { cause: err, details: { method, pathname } });
  }
  if (res.status >= 500 || res.status === 408 || res.status === 429) {
    throw new OutboxError('REGISTRY_UNAVAILABLE', `schema registry ${method} ${pathname} answered ${res.status}: ${describe(res.body)}`, {
      details: { method, pathname, status: res.status },
    });
  }
  return res;
}

/** Message of a registry error body ({ message, error_code }) or the body itself. */
export function describe(body: unknown): string {
  if (typeof body === 'object' && body !== null && 'message' in body) return String((body as { message: unknown }).message);
  return typeof body === 'string' ? body : JSON.stringify(body);
}

export function errorCode(body: unknown): number | undefined {
  if (typeof body === 'object' && body !== null && 'error_code' in body) {
    const c = (body as { error_code: unknown }).error_code;
    return typeof c === 'number' ? c : undefined;
  }
  return undefined;
}

function numberField(body: unknown, field: string): number | undefined {
  if (typeof body === 'object' && body !== null && field in body) {
    const v = (body as Record<string, unknown>)[field];
    return typeof v === 'number' ? v : undefined;
  }
  return undefined;
}

const enc = encodeURIComponent;

/** Id of `schema` under `subject` if it is registered there, else undefined. */
export async function lookupSchemaId(settings: RegistrySettings, subject: string, schema: string): Promise<{ id: number; version: number } | undefined> {
  const res = await call(settings, 'POST', `/subjects/${enc(subject)}`, { schema, schemaType: 'AVRO' });
  if (res.status === 404) return undefined;
  const id = numberField(res.body, 'id');
  const version = numberField(res.body, 'version');
  if (res.status !== 200 || id === undefined) {
    throw new OutboxError('REGISTRY_UNAVAILABLE', `schema registry lookup of ${subject} answered ${res.status}: ${describe(res.body)}`, {
      details: { subject, status: res.status },
    });
  }
  return { id, version: version ?? 0 };
}

export type RegisterOutcome = { ok: true; id: number } | { ok: false; status: number; message: string };

/** Register `schema` under `subject` (idempotent: an identical schema answers its existing id). */
export async function registerSchema(settings: RegistrySettings, subject: string, schema: string): Promise<RegisterOutcome> {
  const res = await call(settings, 'POST', `/subjects/${enc(subject)}/versions`, { schema, schemaType: 'AVRO' });
  const id = numberField(res.body, 'id');
  if (res.status === 200 && id !== undefined) return { ok: true, id };
  return { ok: false, status: res.status, message: describe(res.body) };
}

/** Schema text of a registry id, or undefined when the registry does not know the id. */
export async function schemaById(settings: RegistrySettings, id: number): Promise<string | undefined> {
  const res = await call(settings, 'GET', `/schemas/ids/${id}`);
  if (res.status === 404) return undefined;
  const body = res.body;
  if (res.status !== 200 || typeof body !== 'object' || body === null || typeof (body as { schema?: unknown }).schema !== 'string') {
    throw new OutboxError('REGISTRY_UNAVAILABLE', `schema registry GET /schemas/ids/${id} answered ${res.status}: ${describe(body)}`, { details: { id, status: res.status } });
  }
  return (body as { schema: string }).schema;
}

/** Compatibility level configured on the subject itself, or undefined when none is (Apicurio: 404 for unknown subjects). */
export async function subjectCompatibility(settings: RegistrySettings, subject: string): Promise<string | undefined> {
  const res = await call(settings, 'GET', `/config/${enc(subject)}`);
  if (res.status === 404) return undefined;
  if (res.status !== 200 || typeof res.body !== 'object' || res.body === null) return undefined;
  const b = res.body as { compatibilityLevel?: unknown; compatibility?: unknown };
  const level = b.compatibilityLevel ?? b.compatibility;
  return typeof level === 'string' ? level.toUpperCase() : undefined;
}

export async function setSubjectCompatibility(settings: RegistrySettings, subject: string, level: string): Promise<void> {
  const res = await call(settings, 'PUT', `/config/${enc(subject)}`, { compatibility: level });
  if (res.status !== 200) {
    throw new OutboxError('REGISTRY_UNAVAILABLE', `schema registry PUT /config/${subject} answered ${res.status}: ${describe(res.body)}`, {
      details: { subject, status: res.status },
    });
  }
}

/** Registered versions of a subject with their schema text (empty when the subject does not exist). */
export async function subjectVersions(settings: RegistrySettings, subject: string): Promise<{ version: number; id: number; schema: string }[]> {
  const res = await call(settings, 'GET', `/subjects/${enc(subject)}/versions`);
  if (res.status === 404) return [];
  if (res.status !== 200 || !Array.isArray(res.body)) {
    throw new OutboxError('REGISTRY_UNAVAILABLE', `schema registry GET /subjects/${subject}/versions answered ${res.status}: ${describe(res.body)}`, { details: { subject } });
  }
  const out: { version: number; id: number; schema: string }[] = [];
  for (const v of res.body as unknown[]) {
    if (typeof v !== 'number') continue;
    const one = await call(settings, 'GET', `/subjects/${enc(subject)}/versions/${v}`);
    const b = one.body as { id?: unknown; schema?: unknown } | null;
    if (one.status === 200 && b && typeof b.id === 'number' && typeof b.schema === 'string') out.push({ version: v, id: b.id, schema: b.schema });
  }
  return out.sort((a, b) => a.version - b.version);
}

/** The registry's verdict on `schema` against the subject's latest version under the subject's configured level. */
export async function registryCompatible(settings: RegistrySettings, subject: string, schema: string): Promise<{ compatible: boolean; messages: string[] } | undefined> {
  const res = await call(settings, 'POST', `/compatibility/subjects/${enc(subject)}/versions/latest?verbose=true`, { schema, schemaType: 'AVRO' });
  if (res.status === 404) return undefined;
  const b = res.body as { is_compatible?: unknown; messages?: unknown } | null;
  if (res.status !== 200 || !b || typeof b.is_compatible !== 'boolean') return undefined;
  const messages = Array.isArray(b.messages) ? b.messages.map((m) => String(m)) : [];
  return { compatible: b.is_compatible, messages };
}
