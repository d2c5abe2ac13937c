import { trace } from '@opentelemetry/api';
import { appendEvents, withTransaction, type NewEvent } from '../../writer';
import { useTestDatabase } from '../support/isolation';
import { useInMemoryTracing } from '../support/tracing';

// The writer stores the caller's OpenTelemetry context with the event (`traceparent`), so that the
// relay's and projector's spans join the request's trace; with no active span it stores none, never a
// made-up one.
const db = useTestDatabase();
useInMemoryTracing();

const event = (id: string, extra: Partial<NewEvent> = {}): NewEvent => ({
  aggregateType: 'order',
  aggregateId: id,
  eventType: 'OrderPlaced',
  schemaVersion: 1,
  payload: { total: 1 },
  actorId: 'user:1',
  traceId: 'req-1',
  ...extra,
});

async function storedTraceparent(id: string): Promise<string | null> {
  const { rows } = await db.pool.query<{ traceparent: string | null }>('SELECT traceparent FROM outbox WHERE aggregate_id = $1', [id]);
  return rows[0]!.traceparent;
}

test('inside an active span, the event stores that span as its traceparent', async () => {
  await trace.getTracer('test').startActiveSpan('POST /orders', async (request) => {
    await withTransaction(db.pool, (c) => appendEvents(c, [event('o-active')]));
    request.end();
    const sc = request.spanContext();
    expect(await storedTraceparent('o-active')).toBe(`00-${sc.traceId}-${sc.spanId}-01`);
  });
});

test('with no active span, no traceparent is stored (none is made up); an explicit one or null wins', async () => {
  await withTransaction(db.pool, (c) => appendEvents(c, [event('o-none')]));
  expect(await storedTraceparent('o-none')).toBeNull();
  const given = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  await trace.getTracer('test').startActiveSpan('POST /orders', async (request) => {
    await withTransaction(db.pool, (c) => appendEvents(c, [event('o-given', { traceparent: given }), event('o-null', { traceparent: null })]));
    request.end();
  });
  expect(await storedTraceparent('o-given')).toBe(given);
  expect(await storedTraceparent('o-null')).toBeNull();
});
