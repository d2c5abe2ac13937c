import { loadConfig, type OutboxConfig } from '../../core/config';

/**
 * Environment and parsed config of a relay bound to a test's own database and topic: aggregate type
 * `user` is mapped to `topic` (and every other known type to `<topic>.<type>`), so test files never
 * share topics.
 */
export function relayEnv(databaseUrl: string, topic: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: databaseUrl,
    OUTBOX_TOPIC_MAP: `user=${topic}`,
    OUTBOX_TOPIC_SUFFIX: `.${topic}`,
    OUTBOX_TOPIC_PARTITIONS: '3',
    OUTBOX_RELAY_POLL_INTERVAL: '200ms',
    OUTBOX_ENV_FILE: '/dev/null',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'warn',
    ...extra,
  };
}

export function relayConfig(databaseUrl: string, topic: string, extra: Record<string, string> = {}): OutboxConfig {
  return loadConfig(relayEnv(databaseUrl, topic, extra), { database: true, kafka: true, registry: true });
}

/** INSERT statements as any service would write them (the plain-SQL contract). */
export const INSERT_EVENT = `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id, correlation_id)
  VALUES ('user', $1, 'UserEmailChanged', 1, jsonb_build_object('email', $2::text), 'user:test', '4bf92f3577b34da6a3ce929d0e0e4736', $3)`;
