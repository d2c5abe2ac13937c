import type { IHeaders, Kafka } from 'kafkajs';
import type pg from 'pg';
import { readTopics, type ReadMessage } from './kafka';

/**
 * The delivery checker: the ledger is the set of committed outbox rows; the evidence is what is on the
 * topics, read back from the beginning (never the relay's own bookkeeping or logs).
 *  - lost: committed events with no message on the topic
 *  - duplicates: extra copies of an event (at-least-once after a crash; same event_id)
 *  - divergent: extra copies whose key, value or headers differ from the event's first copy (a
 *    redelivery must be the same record again, not another record under a known event_id)
 *  - reordered: aggregates whose messages are not in version order: for every k, the k-th copies of
 *    the aggregate's events must be in version order (offset order within the partition), and all of an
 *    aggregate's messages must be on one partition of one topic (there is no order across partitions)
 *  - malformed: messages of ledger events whose aggregate_type / aggregate_id / aggregate_version headers
 *    are missing or differ from the ledger row (order is then checked with the ledger's version)
 *  - unexpected: messages for events that are not in the ledger (e.g. from a rolled-back transaction),
 *    or without an event_id header
 */
export interface DeliveryReport {
  committed: number;
  messages: number;
  lost: number;
  duplicates: number;
  divergent: number;
  reordered: number;
  malformed: number;
  unexpected: number;
  lostEventIds: string[];
  duplicateEventIds: string[];
  reorderedAggregates: string[];
  malformedEventIds: string[];
}

/** A committed event as the checker needs it (the outbox row's columns, as text). */
export interface LedgerEntry {
  aggregate_type: string;
  aggregate_id: string;
  /** The row's aggregate_version; when absent the message's header is trusted for the order check. */
  aggregate_version?: string | number;
}

export async function checkDelivery(db: pg.Pool, kafka: Kafka, topics: string[], options: { timeoutMs?: number; schema?: string; where?: string } = {}): Promise<DeliveryReport> {
  const q = options.schema === undefined ? '' : `"${options.schema}".`; // default: the connection's search_path
  const ledger = await db.query<{ event_id: string; aggregate_type: string; aggregate_id: string; aggregate_version: string }>(
    `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version::text FROM ${q}outbox ${options.where ? `WHERE ${options.where}` : ''}`,
  );
  const committed = new Map(ledger.rows.map((r) => [r.event_id, r]));
  // Wait until every committed event is on a topic (or the time limit), then read everything there is.
  let messages: ReadMessage[];
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    messages = await readTopics(kafka, topics, { timeoutMs: Math.max(5_000, deadline - Date.now()) });
    const seen = new Set(messages.map((m) => header(m.message.headers ?? {}, 'event_id')));
    if ([...committed.keys()].every((id) => seen.has(id)) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  return analyse(committed, messages);
}

export function analyse(committed: Map<string, LedgerEntry>, messages: ReadMessage[]): DeliveryReport {
  const copies = new Map<string, ReadMessage[]>();
  /** Per aggregate: the partitions it was seen on and, in offset order, each message's version and copy number (1 = first). */
  const perAggregate = new Map<string, { places: Set<string>; seq: Array<{ version: number; copy: number }> }>();
  const malformedIds: string[] = [];
  let unexpected = 0;
  // Order within a partition is offset order.
  const sorted = [...messages].sort((a, b) => (a.topic === b.topic ? a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)) : a.topic < b.topic ? -1 : 1));
  for (const m of sorted) {
    const h = m.message.headers ?? {};
    const eventId = header(h, 'event_id');
    const row = eventId === undefined ? undefined : committed.get(eventId);
    if (eventId === undefined || row === undefined) {
      unexpected += 1;
      continue;
    }
    const list = copies.get(eventId) ?? [];
    list.push(m);
    copies.set(eventId, list);
    const headerVersion = header(h, 'aggregate_version');
    const parsed = headerVersion !== undefined && /^[0-9]+$/.test(headerVersion) ? Number(headerVersion) : undefined;
    const ledgerVersion = row.aggregate_version === undefined ? undefined : Number(row.aggregate_version);
    const wellFormed =
      header(h, 'aggregate_type') === row.aggregate_type &&
      header(h, 'aggregate_id') === row.aggregate_id &&
      parsed !== undefined &&
      (ledgerVersion === undefined || parsed === ledgerVersion);
    if (!wellFormed) malformedIds.push(eventId);
    const agg = `${row.aggregate_type}/${row.aggregate_id}`;
    const entry = perAggregate.get(agg) ?? { places: new Set<string>(), seq: [] };
    entry.places.add(`${m.topic}/${m.partition}`);
    // Without any version (no ledger version, no usable header) the order cannot be shown: NaN fails the check below.
    entry.seq.push({ version: ledgerVersion ?? parsed ?? Number.NaN, copy: list.length });
    perAggregate.set(agg, entry);
  }
  const reorderedAggregates = [...perAggregate.entries()].filter(([, a]) => a.places.size > 1 || !copiesInOrder(a.seq)).map(([k]) => k);
  const lostEventIds = [...committed.keys()].filter((id) => !copies.has(id));
  const duplicateEventIds = [...copies.entries()].filter(([, c]) => c.length > 1).map(([id]) => id);
  let divergent = 0;
  for (const id of duplicateEventIds) {
    const [first, ...rest] = copies.get(id)!;
    for (const c of rest) if (!sameRecord(first!, c)) divergent += 1;
  }
  return {
    committed: committed.size,
    messages: messages.length,
    lost: lostEventIds.length,
    duplicates: [...copies.values()].reduce((a, c) => a + c.length - 1, 0),
    divergent,
    reordered: reorderedAggregates.length,
    malformed: malformedIds.length,
    unexpected,
    lostEventIds: lostEventIds.slice(0, 20),
    duplicateEventIds: duplicateEventIds.slice(0, 20),
    reorderedAggregates: reorderedAggregates.slice(0, 20),
    malformedEventIds: malformedIds.slice(0, 20),
  };
}

/** For every copy number k, the k-th copies must come in strictly increasing version order. */
function copiesInOrder(seq: Array<{ version: number; copy: number }>): boolean {
  const last = new Map<number, number>();
  for (const { version, copy } of seq) {
    if (!Number.isInteger(version)) return false;
    const prev = last.get(copy);
    if (prev !== undefined && version <= prev) return false;
    last.set(copy, version);
  }
  return true;
}

function header(h: IHeaders, name: string): string | undefined {
  const v = h[name];
  if (v === undefined) return undefined;
  const one = Array.isArray(v) ? v[0] : v;
  return one === undefined ? undefined : one.toString();
}

/** Same key, value and headers: a redelivery of the same record. */
function sameRecord(a: ReadMessage, b: ReadMessage): boolean {
  const bytes = (x: Buffer | string | null | undefined): string => (x === null || x === undefined ? '' : Buffer.from(x).toString('base64'));
  if (bytes(a.message.key) !== bytes(b.message.key) || bytes(a.message.value) !== bytes(b.message.value)) return false;
  const ha = a.message.headers ?? {};
  const hb = b.message.headers ?? {};
  const names = new Set([...Object.keys(ha), ...Object.keys(hb)]);
  for (const n of names) if (header(ha, n) !== header(hb, n)) return false;
  return true;
}
