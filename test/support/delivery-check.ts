import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import { readTopics, type ReadMessage } from './kafka';

/**
 * The delivery checker: the ledger is the set of committed outbox rows; the evidence is what is on the
 * topics, read back from the beginning (never the relay's own bookkeeping or logs).
 *  - lost: committed events with no message on the topic
 *  - duplicates: extra copies of an event (at-least-once after a crash; same event_id)
 *  - reordered: aggregates whose first occurrences are not in version order
 *  - unexpected: messages for events that are not in the ledger (e.g. from a rolled-back transaction)
 */
export interface DeliveryReport {
  committed: number;
  messages: number;
  lost: number;
  duplicates: number;
  reordered: number;
  unexpected: number;
  lostEventIds: string[];
  reorderedAggregates: string[];
}

export async function checkDelivery(
  db: pg.Pool,
  kafka: Kafka,
  topics: string[],
  options: { timeoutMs?: number; schema?: string; where?: string } = {},
): Promise<DeliveryReport> {
  const schema = options.schema ?? 'public';
  const ledger = await db.query<{ event_id: string; aggregate_type: string; aggregate_id: string; aggregate_version: string }>(
    `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version::text FROM "${schema}".outbox ${options.where ? `WHERE ${options.where}` : ''}`,
  );
  const committed = new Map(ledger.rows.map((r) => [r.event_id, r]));
  // Wait until every committed event is on a topic (or the time limit), then read everything there is.
  let messages: ReadMessage[] = [];
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    messages = await readTopics(kafka, topics, { timeoutMs: Math.max(5_000, deadline - Date.now()) });
    const seen = new Set(messages.map((m) => m.message.headers?.event_id?.toString()));
    if ([...committed.keys()].every((id) => seen.has(id)) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  return analyse(committed, messages);
}

export function analyse(
  committed: Map<string, { aggregate_type: string; aggregate_id: string }>,
  messages: ReadMessage[],
): DeliveryReport {
  const counts = new Map<string, number>();
  const firstVersions = new Map<string, number[]>();
  let unexpected = 0;
  // Order within a partition is offset order; an aggregate lives in one partition.
  const sorted = [...messages].sort((a, b) =>
    a.topic === b.topic ? a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)) : a.topic < b.topic ? -1 : 1,
  );
  for (const m of sorted) {
    const h = m.message.headers ?? {};
    const eventId = h.event_id?.toString() ?? '';
    if (!committed.has(eventId)) {
      unexpected += 1;
      continue;
    }
    const n = (counts.get(eventId) ?? 0) + 1;
    counts.set(eventId, n);
    if (n === 1) {
      const agg = `${h.aggregate_type?.toString()}/${h.aggregate_id?.toString()}`;
      const list = firstVersions.get(agg) ?? [];
      list.push(Number(h.aggregate_version?.toString()));
      firstVersions.set(agg, list);
    }
  }
  const lostEventIds = [...committed.keys()].filter((id) => !counts.has(id));
  const reorderedAggregates = [...firstVersions.entries()].filter(([, v]) => v.some((x, i) => i > 0 && x < v[i - 1]!)).map(([k]) => k);
  return {
    committed: committed.size,
    messages: messages.length,
    lost: lostEventIds.length,
    duplicates: [...counts.values()].reduce((a, n) => a + n - 1, 0),
    reordered: reorderedAggregates.length,
    unexpected,
    lostEventIds: lostEventIds.slice(0, 20),
    reorderedAggregates: reorderedAggregates.slice(0, 20),
  };
}
