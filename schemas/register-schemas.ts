import type { RegistrySettings } from '../core/config';
import type { Logger } from '../core/logger';
import { loadCatalog, type SchemaCatalog } from './catalog';
import { readable, compatibilityFor, type CompatibilityConfig, type CompatibilityLevel, type Incompatibility } from './compatibility';
import { registerSchema, setSubjectCompatibility } from './registry-http';

export interface RegisteredSchema {
  subject: string;
  eventType: string;
  version: number;
  id: number;
  compatibility: CompatibilityLevel;
}

export interface RegisterRejection {
  subject: string;
  version: number;
  file: string;
  /** The registry's message (Apicurio names the diff, e.g. `[c at /fields/1]`). */
  message: string;
  /** Local explanation against the previous local version, naming the fields. */
  problems: Incompatibility[];
}

export interface RegisterReport {
  ok: boolean;
  /** Every version registered (or found registered), in order. */
  registered: RegisteredSchema[];
  /** The first version the registry refused; registration stops there. */
  rejected?: RegisterRejection;
}

export interface RegisterSchemasOptions {
  registry: RegistrySettings;
  /** The schemas to register (default: loadCatalog(dir) with the default namespace). */
  catalog?: SchemaCatalog;
  /** Directory of the .avsc files when no catalog is given (the CLI's --dir). */
  dir?: string;
  logger: Logger;
  /** Default BACKWARD for every subject; overrides by subject or event type. */
  compatibility?: CompatibilityConfig;
}

/**
 * `outbox schemas register`: for every subject set its compatibility level (PUT /config/{subject}), then
 * register every local version in order (idempotent: an already registered schema answers its id).
 * A version the registry rejects is a returned `rejected` (ok: false) naming the subject, version and,
 * where the local explanation finds it, the field; registration stops there.
 */
export async function registerSchemas(options: RegisterSchemasOptions): Promise<RegisterReport> {
  const { registry } = options;
  const catalog = options.catalog ?? loadCatalog(options.dir);
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
        const problems = prev ? readable(entry.type, prev.type, { reader: `v${entry.version}`, writer: `v${prev.version}`, readerIsNew: true }) : [];
        logger.error({ subject: entry.subject, version: entry.version, status: res.status, message: res.message, problems }, 'schema registry rejected a schema');
        return {
          ok: false,
          registered: out,
          rejected: { subject: entry.subject, version: entry.version, file: entry.file, message: `HTTP ${res.status}: ${res.message}`, problems },
        };
      }
      out.push({ subject: entry.subject, eventType, version: entry.version, id: res.id, compatibility: level });
      logger.info({ subject: entry.subject, version: entry.version, schemaId: res.id, compatibility: level }, 'schema registered');
    }
  }
  return { ok: true, registered: out };
}
