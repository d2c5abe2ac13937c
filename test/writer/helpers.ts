import type { NewEvent } from '../../writer';

/** A valid event for tests; override any field. */
export function makeEvent(aggregateType: string, aggregateId: string, overrides: Partial<NewEvent> = {}): NewEvent {
  return {
    aggregateType,
    aggregateId,
    eventType: 'Something Happened',
    schemaVersion: 1,
    payload: { n: Math.floor(Math.random() * 1e6), note: 'héllo ✓' },
    actorId: 'user:7',
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    correlationId: 'req-123',
    ...overrides,
  };
}
