import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import type { RelaySettings } from '../core/config';
import type { Logger } from '../core/logger';
import { ident } from '../core/pg';
import { topicFor } from '../core/topics';
import { EVENT_HEADERS, headerText, type RawHeaders } from '../event/headers';
import { readTopicsToEnd } from './read-topic';

/** One published event that PostgreSQL no longer matches. */
export interface PublishedDifference {
  aggregateType: string;
  aggregateId: string;
  /** The version the event was published with. */
  version: number;
  eventId: string;
  /** `payload hash` | `missing version` | `reordering` | `moved to another aggregate`. */
  kind: 'payload hash' | 'missing version' | 'reordering' | 'moved to another aggregate';
  detail: string;
  /** Where it was read: topic/partition@offset. */
  where: string;
}

export interface KafkaCrossCheckResult {
  ok: boolean;
  /** Messages read from the event topics. */
  read: number;
  /** Published events found in PostgreSQL and compared. */
  compared: number;
  topics: string[];
  differences: PublishedDifference[];
}

interface Published {
  eventId: string;
  aggregateType: string;
  aggregateId: string;
  version: bigint;
  hash: string;
  prevHash: string | undefined;
  where: string;
}

interface Row {
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: string;
  hash: string;
}

const ZERO = '0'.repeat(64);

/**
 * Compare what was published to Kafka with the history in PostgreSQL. Every message of the event
 * topics (one per aggregate type found in the history, as the relay names them) carries `event_id` and
 * `hash` headers. A message whose event_id is stored must have the same hash, aggregate and version; a
 * message whose event_id is gone is reported as a missing version when it belongs to this history: its
 * prev_hash continues a chain that does (a stored or published event of the same aggregate). Messages of
 * other outboxes sharing a topic (unknown event_ids that continue no chain of ours) are ignored.
 */
export async function crossCheckKafka(
  pool: pg.Pool,
  kafka: Kafka,
  options: { schema: string; relay: Pick<RelaySettings, 'topicMap' | 'topicSuffix' | 'topicTemplate'>; logger: Logger; timeoutMs?: number },
): Promise<KafkaCrossCheckResult> {
  const s = ident(options.schema);
  const types = (await pool.query<{ aggregate_type: string }>(`SELECT DISTINCT aggregate_type FROM ${s}.outbox`)).rows.map((r) => r.aggregate_type);
  const topicTypes = new Map<string, Set<string>>();
  for (const t of types) {
    const topic = topicFor(t, options.relay);
    topicTypes.set(topic, (topicTypes.get(topic) ?? new Set()).add(t));
  }
  const topics = [...topicTypes.keys()];
  const published: Published[] = [];
  const { read } = await readTopicsToEnd(kafka, {
    topics,
    logger: options.logger,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    onMessage: (topic, partition, m) => {
      const h = m.headers as RawHeaders | undefined;
      const eventId = headerText(h, EVENT_HEADERS.eventId);
      const hash = headerText(h, EVENT_HEADERS.hash);
      const aggregateType = headerText(h, EVENT_HEADERS.aggregateType);
      const aggregateId = headerText(h, EVENT_HEADERS.aggregateId);
      const version = headerText(h, EVENT_HEADERS.aggregateVersion);
      if (eventId === undefined || hash === undefined || aggregateType === undefined || aggregateId === undefined || version === undefined || !/^\d+$/.test(version)) return;
      if (!topicTypes.get(topic)?.has(aggregateType)) return;
      published.push({
        eventId,
        aggregateType,
        aggregateId,
        version: BigInt(version),
        hash: hash.toLowerCase(),
        prevHash: headerText(h, EVENT_HEADERS.prevHash)?.toLowerCase(),
        where: `${topic}/${partition}@${m.offset}`,
      });
    },
  });

  // The stored rows of the published event ids, in chunks.
  const stored = new Map<string, Row>();
  const ids = [...new Set(published.map((p) => p.eventId))].filter((id) => /^[0-9a-f-]{36}$/i.test(id));
  for (let i = 0; i < ids.length; i += 5000) {
    const { rows } = await pool.query<Row>(
      `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version::text, encode(hash, 'hex') AS hash
         FROM ${s}.outbox WHERE event_id = ANY($1::uuid[])`,
      [ids.slice(i, i + 5000)],
    );
    for (const r of rows) stored.set(r.event_id, r);
  }

  // Hashes that belong to this history, per aggregate: of stored rows of published aggregates, and of
  // published events whose event_id is stored (filled in version order below).
  const key = (t: string, id: string) => `${t}\u0000${id}`;
  const aggregates = new Map<string, Published[]>();
  for (const p of published) {
    const k = key(p.aggregateType, p.aggregateId);
    const list = aggregates.get(k) ?? [];
    list.push(p);
    aggregates.set(k, list);
  }
  const ours = new Map<string, Set<string>>();
  const pairs = [...aggregates.keys()].map((k) => k.split('\u0000') as [string, string]);
  for (let i = 0; i < pairs.length; i += 2000) {
    const chunk = pairs.slice(i, i + 2000);
    const { rows } = await pool.query<{ aggregate_type: string; aggregate_id: string; hash: string }>(
      `SELECT o.aggregate_type, o.aggregate_id, encode(o.hash, 'hex') AS hash
         FROM ${s}.outbox o JOIN unnest($1::text[], $2::text[]) AS a(t, i) ON o.aggregate_type = a.t AND o.aggregate_id = a.i`,
      [chunk.map((c) => c[0]), chunk.map((c) => c[1])],
    );
    for (const r of rows) {
      const k = key(r.aggregate_type, r.aggregate_id);
      (ours.get(k) ?? ours.set(k, new Set()).get(k)!).add(r.hash);
    }
  }

  const differences: PublishedDifference[] = [];
  let compared = 0;
  for (const [k, list] of aggregates) {
    list.sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0));
    const known = ours.get(k) ?? new Set<string>();
    for (const p of list) {
      if (stored.has(p.eventId)) known.add(p.hash);
    }
    const seen = new Set<string>();
    for (const p of list) {
      if (seen.has(`${p.eventId}/${p.hash}`)) continue; // a redelivered duplicate
      seen.add(`${p.eventId}/${p.hash}`);
      const base = { aggregateType: p.aggregateType, aggregateId: p.aggregateId, version: Number(p.version), eventId: p.eventId, where: p.where };
      const row = stored.get(p.eventId);
      if (row === undefined) {
        if (p.prevHash !== undefined && p.prevHash !== ZERO && known.has(p.prevHash)) {
          known.add(p.hash);
          differences.push({ ...base, kind: 'missing version', detail: `published as v${p.version} (event ${p.eventId}), no longer in PostgreSQL` });
        }
        continue;
      }
      compared++;
      if (row.aggregate_type !== p.aggregateType || row.aggregate_id !== p.aggregateId) {
        differences.push({
          ...base,
          kind: 'moved to another aggregate',
          detail: `published for ${p.aggregateType}/${p.aggregateId}, stored for ${row.aggregate_type}/${row.aggregate_id}`,
        });
      } else if (row.aggregate_version !== p.version.toString()) {
        differences.push({ ...base, kind: 'reordering', detail: `published as v${p.version}, stored as v${row.aggregate_version}` });
      } else if (row.hash !== p.hash) {
        differences.push({ ...base, kind: 'payload hash', detail: `published hash ${p.hash}, stored hash ${row.hash}` });
      }
    }
  }
  differences.sort((a, b) =>
    a.aggregateType < b.aggregateType ? -1 : a.aggregateType > b.aggregateType ? 1 : a.aggregateId < b.aggregateId ? -1 : a.aggregateId > b.aggregateId ? 1 : a.version - b.version,
  );
  return { ok: differences.length === 0, read, compared, topics, differences };
}
