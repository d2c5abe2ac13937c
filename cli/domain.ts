import path from 'node:path';
import type { OutboxConfig } from '../core/config';
import { findConfigModule, loadConfigModule } from '../core/config-module';
import { OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { topicFor } from '../core/topics';
import { toProjection } from '../projector/define';
import type { ProjectorMetrics } from '../projector/metrics';
import { createAuditLogProjection } from '../projector/projections/audit-log';
import type { AggregateReducer, Projection } from '../projector/types';
import type { SchemaCatalog } from '../schemas/catalog';
import { upcasterRegistryFrom, type UpcasterRegistry } from '../schemas/upcasters';
import { domainConfig as typed, type OutboxDomainConfig } from './define-config';
import { load } from './lazy';

/**
 * The domain every command works on: one schema catalog, the upcasters, the projections and reducers,
 * and the topic routing. Sources, first wins: `--schemas <dir>`, OUTBOX_SCHEMAS_DIR, the config module's
 * `schemasDir`; the config module is `--config <path>`, OUTBOX_CONFIG or outbox.config.* in the working
 * directory. The relay, projector, rebuild, schemas, status and audit commands all read it from here.
 */
export interface Domain {
  /** The config module loaded, if any. */
  configFile?: string;
  /** Where the schemas come from (for messages). */
  schemasSource: string;
  schemasDir: string;
  /** The configuration with the config module's topic routing merged in (environment entries win). */
  config: OutboxConfig;
  catalog(): SchemaCatalog;
  upcasters: UpcasterRegistry;
  reducers: AggregateReducer[];
  /** Names of the projections `outbox project` runs (audit_log first when enabled). */
  projectionNames: string[];
  /** The running projections over the catalog (built in audit_log + the config's). */
  projections(deps: { catalog: SchemaCatalog; metrics?: ProjectorMetrics }): Projection[];
}

export interface DomainSources {
  config: OutboxConfig;
  flags: Record<string, string | boolean | undefined>;
  cwd: string;
  logger: Logger;
}

function toRegistry(upcasters: OutboxDomainConfig['upcasters']): UpcasterRegistry {
  if (upcasters && typeof (upcasters as UpcasterRegistry).upcast === 'function') return upcasters as UpcasterRegistry;
  return upcasterRegistryFrom((upcasters ?? {}) as Record<string, Record<number, (p: Record<string, unknown>) => Record<string, unknown>>>);
}

/** Resolve the domain of a command invocation (loads the config module once). */
export async function loadDomain(sources: DomainSources): Promise<Domain> {
  const { config, flags, cwd } = sources;
  const explicit = typeof flags.config === 'string' ? flags.config : config.configModule;
  const file = findConfigModule(cwd, explicit);
  const mod = file ? await loadConfigModule(file) : undefined;
  const domainConfig = typed(mod?.config ?? {});
  let schemasDir: string | undefined;
  let schemasSource: string;
  if (typeof flags.schemas === 'string') {
    schemasDir = path.resolve(cwd, flags.schemas);
    schemasSource = '--schemas';
  } else if (typeof flags.dir === 'string') {
    schemasDir = path.resolve(cwd, flags.dir);
    schemasSource = '--dir';
  } else if (config.schemasDir !== undefined) {
    schemasDir = path.resolve(cwd, config.schemasDir);
    schemasSource = 'OUTBOX_SCHEMAS_DIR';
  } else if (domainConfig.schemasDir !== undefined) {
    schemasDir = domainConfig.schemasDir;
    schemasSource = `schemasDir of ${file}`;
  } else {
    throw new OutboxError(
      'CONFIG_INVALID',
      'no event schemas: set OUTBOX_SCHEMAS_DIR or --schemas <dir> (layout <dir>/<aggregate_type>/<EventType>.v<N>.avsc), or declare schemasDir in outbox.config.*',
      { details: { variable: 'OUTBOX_SCHEMAS_DIR' } },
    );
  }
  const dir = schemasDir;
  const routed: OutboxConfig = { ...config, relay: { ...config.relay, topicMap: { ...(domainConfig.topics ?? {}), ...config.relay.topicMap } } };
  const upcasters = toRegistry(domainConfig.upcasters);
  const reducers = (domainConfig.reducers ?? []) as AggregateReducer[];
  const auditLog = domainConfig.auditLog ?? true;
  const own = domainConfig.projections ?? [];
  let catalog: SchemaCatalog | undefined;

  return {
    ...(file ? { configFile: file } : {}),
    schemasSource,
    schemasDir: dir,
    config: routed,
    catalog() {
      if (!catalog) {
        const { loadCatalog } = load('catalog');
        try {
          catalog = loadCatalog(dir);
        } catch (err) {
          if (err instanceof OutboxError && /does not exist/.test(err.message)) {
            throw new OutboxError('CONFIG_INVALID', `${err.message} (from ${schemasSource})`, { cause: err, details: err.details });
          }
          throw err;
        }
      }
      return catalog;
    },
    upcasters,
    reducers,
    projectionNames: [...(auditLog ? ['audit_log'] : []), ...own.map((p) => p.name)],
    projections({ catalog: cat, metrics }) {
      const list: Projection[] = [];
      if (auditLog) {
        const topics = [...new Set(cat.aggregateTypes().map((t) => topicFor(t, routed.relay)))];
        if (topics.length === 0)
          throw new OutboxError('CONFIG_INVALID', `the schemas directory ${dir} holds no <aggregate_type>/<EventType>.v<N>.avsc file, so audit_log has nothing to read`);
        list.push(createAuditLogProjection({ topics, reducers, catalog: cat, ...(metrics ? { chainBreaks: metrics.chainBreaksTotal } : {}) }));
      }
      for (const p of own) list.push(toProjection(p, routed.relay));
      return list;
    },
  };
}

/** The projection named `name` of the domain; NOT_FOUND lists the names there are. */
export function findProjection(domain: Domain, deps: { catalog: SchemaCatalog; metrics?: ProjectorMetrics }, name: string): Projection {
  const found = domain.projections(deps).find((p) => p.name === name);
  if (!found) {
    throw new OutboxError(
      'NOT_FOUND',
      `no projection named ${name} (projections: ${domain.projectionNames.join(', ') || 'none'}${domain.configFile ? `, from ${domain.configFile}` : ''})`,
      { details: { projection: name } },
    );
  }
  return found;
}
