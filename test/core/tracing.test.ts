import { contextOf, formatTraceparent, headerTraceparent, parseTraceparent, startMessagingSpan } from '../../core/tracing';
import { trace } from '@opentelemetry/api';

// W3C traceparent handling without an SDK registered (pure logic): with no SDK, spans are no-ops that
// carry their parent's context, so a stored traceparent passes through unchanged and none is invented.
const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

test('a traceparent parses to its span context and formats back; malformed or all-zero ones are refused', () => {
  const sc = parseTraceparent(VALID);
  expect(sc).toEqual({ traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1, isRemote: true });
  expect(formatTraceparent(sc)).toBe(VALID);
  for (const bad of [
    '',
    'garbage',
    '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    null,
    undefined,
  ]) {
    expect(parseTraceparent(bad)).toBeUndefined();
  }
  expect(trace.getSpanContext(contextOf('garbage'))).toBeUndefined();
});

test('without an SDK a messaging span carries the stored context: the header keeps it, and none is made up', () => {
  const withParent = startMessagingSpan({ operation: 'send', topic: 't', parent: VALID, eventId: 'e', key: 'k' });
  expect(headerTraceparent(withParent, VALID)).toBe(VALID);
  const without = startMessagingSpan({ operation: 'send', topic: 't', parent: null, eventId: 'e', key: 'k' });
  expect(headerTraceparent(without, null)).toBeNull();
  expect(headerTraceparent(undefined, 'not a traceparent')).toBeNull();
});
