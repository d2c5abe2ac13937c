import type { RegistrySettings } from '../core/config';
import { OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import type { SchemaCatalog } from './catalog';
import { readable, compatibilityFor, type CompatibilityConfig, type CompatibilityLevel } from './compatibility';
import { registerSchema, setSubjectCompatibility } from './registry-http';

export interface RegisteredSchema {
  subject: string;
  eventType: string;
  version: number;
  id: number;
  compatibility: CompatibilityLevel;
}

export interface RegisterSchemasOptions {
  registry: RegistrySettings;
  catalog: SchemaCatalog;
  logger: Logger;
  /** Default BACKWARD for every subject; overrides by subject or event type. */
  compatibility?: CompatibilityConfig;
}

/**
 * `outbox schemas register`: for every subject set its compatibility level (PUT /config/{subject}), then
 * register every local version in order (idempotent: an already registered schema answers its id).
 * A version the registry rejects is an OutboxError('SCHEMA_INCOMPATIBLE') naming the subject, version and,
 * where the local explanation finds it, the field.
 */
export async function registerSchemas(options: RegisterSchemasOptions): Promise<RegisteredSchema[]> {
  const { registry, catalog } = options;
  const logger = options.logger.child({ component: 'register-schemas' });
  const out: RegisteredSchema[] = [];
  for (const eventType of catalog.eventTypes()) {
    const versions = catalog.versions(eventType);
    const first = versions[0];
    if (!first) continue;
    const level = compatibilityFor(options.compatibility, first);
    await setSubjectCompatibility(registry, first.subject, level);
    for (const entry of versions) {
      const res = await registerSchema(registry, entry.subject, entry.envelopeSchema);
      if (!res.ok) {
        const prev = versions.find((e) => e.version === entry.version - 1);
        const why = prev ? readable(entry.type, prev.type, { reader: `v${entry.version}`, writer: `v${prev.version}`, readerIsNew: true }).map((p) => p.message) : [];
        throw new OutboxError(
          'SCHEMA_INCOMPATIBLE',
          `schema registry rejected ${entry.subject} v${entry.version} (${entry.file}) under ${level}: ${res.message}${why.length > 0 ? `; ${why.join('; ')}` : ''}`,
          { details: { subject: entry.subject, version: entry.version, status: res.status } },
        );
      }
      out.push({ subject: entry.subject, eventType, version: entry.version, id: res.id, compatibility: level });
      logger.info({ subject: entry.subject, version: entry.version, schemaId: res.id, compatibility: level }, 'schema registered');
    }
  }
  return out;
}
