import type pg from 'pg';
import { OutboxError, errorMessage } from '../core/errors';
import { ident, isTransientPgError } from '../core/pg';
import { computeHash, ZERO_HASH } from './canonical';

export interface VerifyChainOptions {
  /** Schema of the outbox tables; default: unqualified names (the connection's search_path). */
  schema?: string;
  /** Only this aggregate; default: all aggregates. */
  aggregate?: { type: string; id: string };
  /** Rows read per query (keyset pagination). Default 5000. */
  batchSize?: number;
}

export interface BrokenLink {
  aggregateType: string;
  aggregateId: string;
  version: number;
  /** Event id of the offending row; null when the break is a missing event (a gap or a missing tail). */
  eventId: string | null;
  reason: string;
}

export interface VerifyChainResult {
  ok: boolean;
  /** Events whose hash was recomputed. */
  checked: number;
  eventsPerSecond: number;
  firstBroken?: BrokenLink;
}

interface Row {
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: string;
  event_type: string;
  schema_version: number;
  occurred_at: string;
  actor_id: string;
  trace_id: string;
  correlation_id: string | null;
  causation_id: string | null;
  traceparent: string | null;
  payload: string;
  prev_hash: Buffer;
  hash: Buffer;
  head_version: string | null;
  head_hash: Buffer | null;
}

/**
 * Recompute the hash chain of every aggregate (or one) from the stored rows, in aggregate and version
 * order: versions must run 1..n without gaps, each prev_hash must equal the previous event's hash (the
 * zero hash for version 1), each hash must equal SHA-256(prev_hash ‖ canonical encoding), and the
 * aggregate head (outbox_aggregates) must point at the last event. Stops at the first broken link and
 * returns it; a broken chain is a returned value, not an exception.
 */
export async function verifyChain(client: pg.ClientBase, options: VerifyChainOptions = {}): Promise<VerifyChainResult> {
  const q = options.schema === undefined ? '' : `${ident(options.schema)}.`;
  const batch = options.batchSize ?? 5000;
  const started = process.hrtime.bigint();
  let checked = 0;
  const done = (firstBroken?: BrokenLink): VerifyChainResult => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const result: VerifyChainResult = { ok: firstBroken === undefined, checked, eventsPerSecond: seconds > 0 ? Math.round(checked / seconds) : 0 };
    if (firstBroken) result.firstBroken = firstBroken;
    return result;
  };

  const select = `SELECT o.event_id::text AS event_id, o.aggregate_type, o.aggregate_id, o.aggregate_version::text AS aggregate_version,
      o.event_type, o.schema_version, to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
      o.actor_id, o.trace_id, o.correlation_id, o.causation_id, o.traceparent, o.payload::text AS payload, o.prev_hash, o.hash,
      a.version::text AS head_version, a.last_hash AS head_hash
    FROM ${q}outbox o LEFT JOIN ${q}outbox_aggregates a ON a.aggregate_type = o.aggregate_type AND a.aggregate_id = o.aggregate_id`;
  const orderBy = 'ORDER BY o.aggregate_type, o.aggregate_id, o.aggregate_version';

  let cur: { type: string; id: string; version: bigint; hash: Buffer; head: { version: string | null; hash: Buffer | null } } | undefined;
  const closeAggregate = (): BrokenLink | undefined => {
    if (!cur) return undefined;
    const headVersion = cur.head.version;
    if (headVersion === null || BigInt(headVersion) !== cur.version || !cur.head.hash?.equals(cur.hash)) {
      const missing = headVersion !== null && BigInt(headVersion) > cur.version;
      return {
        aggregateType: cur.type,
        aggregateId: cur.id,
        version: missing ? Number(cur.version + 1n) : Number(cur.version),
        eventId: null,
        reason: missing
          ? `events ${cur.version + 1n}..${headVersion} are missing (the aggregate head is at version ${headVersion})`
          : `the aggregate head (version ${headVersion ?? 'none'}) does not point at the last event (version ${cur.version})`,
      };
    }
    return undefined;
  };

  let after: [string, string, string] | undefined;
  try {
    for (;;) {
      const params: unknown[] = [];
      const where: string[] = [];
      if (options.aggregate) {
        params.push(options.aggregate.type, options.aggregate.id);
        where.push('o.aggregate_type = $1 AND o.aggregate_id = $2');
      }
      if (after) {
        params.push(...after);
        const n = params.length;
        where.push(`(o.aggregate_type, o.aggregate_id, o.aggregate_version) > ($${n - 2}, $${n - 1}, $${n}::bigint)`);
      }
      params.push(batch);
      const sql = `${select} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ${orderBy} LIMIT $${params.length}`;
      const { rows } = await client.query<Row>(sql, params);
      for (const r of rows) {
        const version = BigInt(r.aggregate_version);
        if (!cur || cur.type !== r.aggregate_type || cur.id !== r.aggregate_id) {
          const broken = closeAggregate();
          if (broken) return done(broken);
          cur = { type: r.aggregate_type, id: r.aggregate_id, version: 0n, hash: ZERO_HASH, head: { version: r.head_version, hash: r.head_hash } };
        }
        const link = (reason: string): VerifyChainResult =>
          done({ aggregateType: r.aggregate_type, aggregateId: r.aggregate_id, version: Number(version), eventId: r.event_id, reason });
        if (version !== cur.version + 1n) {
          return version > cur.version + 1n
            ? done({
                aggregateType: r.aggregate_type,
                aggregateId: r.aggregate_id,
                version: Number(cur.version + 1n),
                eventId: null,
                reason: `version ${cur.version + 1n} is missing (next stored version is ${version})`,
              })
            : link(`version ${version} follows version ${cur.version}`);
        }
        if (!r.prev_hash.equals(cur.hash)) {
          return link(`prev_hash ${r.prev_hash.toString('hex')} does not link to the hash of version ${cur.version} (${cur.hash.toString('hex')})`);
        }
        const hash = computeHash(r.prev_hash, {
          eventId: r.event_id,
          aggregateType: r.aggregate_type,
          aggregateId: r.aggregate_id,
          aggregateVersion: r.aggregate_version,
          eventType: r.event_type,
          schemaVersion: r.schema_version,
          occurredAt: r.occurred_at,
          actorId: r.actor_id,
          traceId: r.trace_id,
          correlationId: r.correlation_id,
          causationId: r.causation_id,
          traceparent: r.traceparent,
          payload: r.payload,
        });
        checked++;
        if (!hash.equals(r.hash)) {
          return link(`hash mismatch: stored ${r.hash.toString('hex')}, recomputed ${hash.toString('hex')} (the event's content changed after it was written)`);
        }
        cur.version = version;
        cur.hash = r.hash;
        cur.head = { version: r.head_version, hash: r.head_hash }; // newest snapshot seen (rows and head agree within one)
      }
      const last = rows[rows.length - 1];
      if (!last || rows.length < batch) break;
      after = [last.aggregate_type, last.aggregate_id, last.aggregate_version];
    }
    const broken = closeAggregate();
    if (broken) return done(broken);

    // Heads without any event (every event of an aggregate removed).
    const headParams: unknown[] = [];
    let headWhere = '';
    if (options.aggregate) {
      headParams.push(options.aggregate.type, options.aggregate.id);
      headWhere = 'AND a.aggregate_type = $1 AND a.aggregate_id = $2';
    }
    const orphan = await client.query<{ aggregate_type: string; aggregate_id: string; version: string }>(
      `SELECT a.aggregate_type, a.aggregate_id, a.version::text AS version FROM ${q}outbox_aggregates a
        WHERE a.version > 0 ${headWhere}
          AND NOT EXISTS (SELECT 1 FROM ${q}outbox o WHERE o.aggregate_type = a.aggregate_type AND o.aggregate_id = a.aggregate_id)
        ORDER BY a.aggregate_type, a.aggregate_id LIMIT 1`,
      headParams,
    );
    const o = orphan.rows[0];
    if (o) {
      return done({ aggregateType: o.aggregate_type, aggregateId: o.aggregate_id, version: 1, eventId: null, reason: `events 1..${o.version} are missing (the aggregate head is at version ${o.version})` });
    }
    return done();
  } catch (err) {
    if (err instanceof OutboxError) throw err;
    throw new OutboxError(isTransientPgError(err) ? 'DB_UNAVAILABLE' : 'DB_REJECTED', `verifying the hash chain failed: ${errorMessage(err)}`, { cause: err });
  }
}
