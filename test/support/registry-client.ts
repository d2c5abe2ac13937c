import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import type { RegistrySettings } from '../../core/config';

/**
 * A standard Confluent client (@kafkajs/confluent-schema-registry) for the registry at SCHEMA_REGISTRY_URL
 * (Apicurio: /apis/ccompat/v7). Tests use it to check that what the relay publishes decodes the way any
 * Confluent consumer would decode it; the library itself talks to the registry through core/registry.ts.
 */
export function createRegistry(settings: RegistrySettings): SchemaRegistry {
  return new SchemaRegistry({
    host: settings.url,
    ...(settings.auth ? { auth: settings.auth } : {}),
    retry: { retries: 2, initialRetryTimeInSecs: 0.2, maxRetryTimeInSecs: 2 },
  });
}
