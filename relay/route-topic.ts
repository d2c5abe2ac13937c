import type { RelaySettings } from '../core/config';

/** The topic of an aggregate type: OUTBOX_TOPIC_MAP first, else `<aggregate_type><suffix>` (default `user` → `user.events`). */
export function topicFor(aggregateType: string, settings: Pick<RelaySettings, 'topicMap' | 'topicSuffix'>): string {
  const mapped = settings.topicMap[aggregateType];
  if (mapped !== undefined) return mapped;
  return `${aggregateType.replace(/[^A-Za-z0-9._-]/g, '_')}${settings.topicSuffix}`;
}
