import { declareDomain, type DomainDeclaration } from '../core/config-module';
import type { ProjectionSource } from '../projector/define';
import type { AggregateReducer } from '../projector/types';
import type { UpcasterMap, UpcasterRegistry } from '../schemas/upcasters';
import type { Entry } from './framework';

/**
 * The type of a config module (`export default defineConfig({ ... })`): core/config-module.ts finds,
 * loads and checks it; the parts are typed here, in the one folder that may name them all.
 */
export interface OutboxDomainConfig extends DomainDeclaration {
  /** Directory of `<aggregate_type>/<EventType>.v<N>.avsc`, relative to the config module. */
  schemasDir?: string;
  /** Payload upcasters vN -> vN+1 (a map, or a registry from createUpcasterRegistry()). */
  upcasters?: UpcasterMap | UpcasterRegistry;
  /** Read models (defineProjection), run by `outbox project` next to the built-in audit_log. */
  projections?: ProjectionSource[];
  /** Aggregate reducers (defineReducer), for snapshots, loadAggregate and `outbox audit history` states. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- public API: each projection/reducer has its own payload and state types
  reducers?: AggregateReducer<any>[];
  /** Topic of an aggregate type (`{ invoice: 'billing.invoices' }`); OUTBOX_TOPIC_MAP entries win. */
  topics?: Record<string, string>;
  /** The built-in audit_log projection over every aggregate type of the catalog (default true). */
  auditLog?: boolean;
  /** Extra `outbox` commands (a service's own tooling, e.g. the example's `outbox demo`). */
  commands?: Entry[];
}

/** Declare a team's domain (the default export of outbox.config.*). Checked at once; errors name the field. */
export function defineConfig(config: OutboxDomainConfig): OutboxDomainConfig {
  return declareDomain(config);
}

/** A config module's declarations as their own types (validateDomainConfig checked their shape when it was loaded). */
export function domainConfig(declared: DomainDeclaration): OutboxDomainConfig {
  return declared as OutboxDomainConfig;
}
