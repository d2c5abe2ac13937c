import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, TraceFlags, type Context, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';

/**
 * OpenTelemetry tracing through `@opentelemetry/api` only: with no SDK registered every call here is a
 * cheap no-op, and the SDK (and its exporter) is the application's choice. Spans follow the OTel
 * messaging semantic conventions for Kafka. Context travels as a W3C `traceparent` string: stored with
 * the event by the writer, and carried in each Kafka record's `traceparent` header.
 */

const TRACER_NAME = 'kafka-outbox';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * One tracer for the process, taken once: it is a proxy that finds the SDK's tracer when one is
 * registered (also after this module loaded), so the per-record path does not ask the global registry.
 */
let cachedTracer: Tracer | undefined;
function tracer(): Tracer {
  return (cachedTracer ??= trace.getTracer(TRACER_NAME));
}

/** `00-<trace id>-<span id>-<flags>` of a valid span context; null for an invalid one (no span, no SDK). */
export function formatTraceparent(sc: SpanContext | undefined): string | null {
  if (!sc || !trace.isSpanContextValid(sc)) return null;
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The span context a W3C traceparent names (remote), or undefined when it is absent or malformed. */
export function parseTraceparent(value: string | null | undefined): SpanContext | undefined {
  const m = value ? TRACEPARENT.exec(value.trim().toLowerCase()) : null;
  if (!m) return undefined;
  const sc: SpanContext = { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) & TraceFlags.SAMPLED, isRemote: true };
  return trace.isSpanContextValid(sc) ? sc : undefined;
}

/** The traceparent of the caller's active span (the request being served), or null when none is active. */
export function activeTraceparent(): string | null {
  return formatTraceparent(trace.getSpanContext(context.active()));
}

/** A context whose parent is the span a stored traceparent names; the root context when there is none. */
export function contextOf(traceparent: string | null | undefined): Context {
  const sc = parseTraceparent(traceparent);
  return sc ? trace.setSpanContext(ROOT_CONTEXT, sc) : ROOT_CONTEXT;
}

export interface MessagingSpanOptions {
  /** `send` (relay, producer) or `process` (projector, consumer). */
  operation: 'send' | 'process';
  topic: string;
  /** The stored or received traceparent: the new span is its child. */
  parent: string | null | undefined;
  eventId: string;
  key: string;
  partition?: number;
  offset?: string;
  consumerGroup?: string;
  attributes?: Record<string, string | number>;
}

/** A producer (`send <topic>`) or consumer (`process <topic>`) span for one event. */
export function startMessagingSpan(o: MessagingSpanOptions): Span {
  const attributes: Record<string, string | number> = {
    'messaging.system': 'kafka',
    'messaging.operation.type': o.operation,
    'messaging.operation.name': o.operation,
    'messaging.destination.name': o.topic,
    'messaging.message.id': o.eventId,
    'messaging.kafka.message.key': o.key,
    ...(o.partition !== undefined ? { 'messaging.destination.partition.id': String(o.partition) } : {}),
    ...(o.offset !== undefined ? { 'messaging.kafka.offset': Number(o.offset) } : {}),
    ...(o.consumerGroup !== undefined ? { 'messaging.consumer.group.name': o.consumerGroup } : {}),
    ...o.attributes,
  };
  return tracer().startSpan(`${o.operation} ${o.topic}`, { kind: o.operation === 'send' ? SpanKind.PRODUCER : SpanKind.CONSUMER, attributes }, contextOf(o.parent));
}

/** End spans: ok, or with the error recorded. */
export function endSpans(spans: Iterable<Span>, error?: unknown): void {
  for (const span of spans) {
    if (error !== undefined) {
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    }
    span.end();
  }
}

/** The traceparent to put in a record's header: the span's own context, else what was stored, else none. */
export function headerTraceparent(span: Span | undefined, stored: string | null | undefined): string | null {
  return formatTraceparent(span?.spanContext()) ?? (parseTraceparent(stored) ? stored!.trim().toLowerCase() : null);
}
