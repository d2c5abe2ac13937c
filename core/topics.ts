import type { RelaySettings } from './config';

/**
 * The topic of an aggregate type, as the relay publishes it and the projector reads it:
 * OUTBOX_TOPIC_MAP first, else `<aggregate_type><OUTBOX_TOPIC_SUFFIX>` (default `user` → `user.events`),
 * with characters Kafka does not allow in topic names replaced by `_`.
 */
export function topicFor(aggregateType: string, settings: Pick<RelaySettings, 'topicMap' | 'topicSuffix'>): string {
  const mapped = settings.topicMap[aggregateType];
  if (mapped !== undefined) return mapped;
  return `${aggregateType.replace(/[^A-Za-z0-9._-]/g, '_')}${settings.topicSuffix}`;
}
