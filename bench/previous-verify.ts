/**
 * The previous verifyChain (keyset pages of 5000 rows in text format, a string per canonical encoding), kept
 * only as a same-run comparison for bench/audit-verify.ts.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { OutboxError } from '../core/errors';
import { ident, pgFailure } from '../core/pg';
import type { BrokenLink, VerifyChainOptions, VerifyChainResult } from '../writer/verify';
import { ZERO_HASH } from '../event/hash-chain';

/** One row as an array (rowMode 'array'): the 13 canonical fields as text, then the stored hashes and the head. */
type Row = [
  eventId: string,
  aggregateType: string,
  aggregateId: string,
  aggregateVersion: string,
  eventType: string,
  schemaVersion: string,
  occurredAt: string,
  actorId: string,
  traceId: string,
  correlationId: string | null,
  causationId: string | null,
  traceparent: string | null,
  payload: string,
  prevHash: Buffer,
  hash: Buffer,
  headVersion: string | null,
  headHash: Buffer | null,
];

/**
 * The canonical encoding (event/canonical.ts, docs/hash-chain.md) of a row whose 13 fields SQL already
 * printed in their canonical text forms (event_id::text, version::text, occurred_at by to_char with six
 * fraction digits and Z, payload::text), as one string: its UTF-8 bytes are the netstrings. Building one
 * string and hashing it once is several times faster than a Buffer per netstring.
 */
function canonicalText(r: Row): string {
  let s = '';
  for (let i = 0; i < 13; i++) {
    const v = r[i] as string | null;
    s += v === null ? '-,' : `${Buffer.byteLength(v, 'utf8')}:${v},`;
  }
  return s;
}

/**
 * Recompute the hash chain of every aggregate (or one) from the stored rows, in aggregate and version
 * order: versions must run 1..n without gaps, each prev_hash must equal the previous event's hash (the
 * zero hash for version 1), each hash must equal SHA-256(prev_hash ‖ canonical encoding), and the
 * aggregate head (outbox_aggregates) must point at the last event. Stops at the first broken link and
 * returns it; a broken chain is a returned value, not an exception.
 */
export async function previousVerifyChain(client: pg.ClientBase, options: VerifyChainOptions = {}): Promise<VerifyChainResult> {
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

  const select = `SELECT o.event_id::text, o.aggregate_type, o.aggregate_id, o.aggregate_version::text,
      o.event_type, o.schema_version::text, to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      o.actor_id, o.trace_id, o.correlation_id, o.causation_id, o.traceparent, o.payload::text, o.prev_hash, o.hash,
      a.version::text, CASE WHEN a.version = o.aggregate_version THEN a.last_hash END
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

  const page = (after: [string, string, string] | undefined): Promise<Row[]> => {
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
    const text = `${select} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ${orderBy} LIMIT $${params.length}`;
    return client.query<Row>({ text, values: params, rowMode: 'array' }).then((r) => r.rows);
  };

  let pending: Promise<Row[]> | undefined;
  try {
    pending = page(undefined);
    for (;;) {
      const rows = await pending;
      pending = undefined;
      const last = rows[rows.length - 1];
      // The next page is asked for before this one is hashed: PostgreSQL reads it while this process hashes.
      if (last && rows.length >= batch) pending = page([last[1], last[2], last[3]]);
      for (const r of rows) {
        const version = BigInt(r[3]);
        if (!cur || cur.type !== r[1] || cur.id !== r[2]) {
          const broken = closeAggregate();
          if (broken) return done(broken);
          cur = { type: r[1], id: r[2], version: 0n, hash: ZERO_HASH, head: { version: r[15], hash: r[16] } };
        }
        const link = (reason: string): VerifyChainResult => done({ aggregateType: r[1], aggregateId: r[2], version: Number(version), eventId: r[0], reason });
        if (version !== cur.version + 1n) {
          return version > cur.version + 1n
            ? done({
                aggregateType: r[1],
                aggregateId: r[2],
                version: Number(cur.version + 1n),
                eventId: null,
                reason: `version ${cur.version + 1n} is missing (next stored version is ${version})`,
              })
            : link(`version ${version} follows version ${cur.version}`);
        }
        const prevHash = r[13];
        const stored = r[14];
        if (!prevHash.equals(cur.hash)) {
          return link(`prev_hash ${prevHash.toString('hex')} does not link to the hash of version ${cur.version} (${cur.hash.toString('hex')})`);
        }
        const hash = createHash('sha256').update(prevHash).update(canonicalText(r), 'utf8').digest();
        checked++;
        if (!hash.equals(stored)) {
          return link(`hash mismatch: stored ${stored.toString('hex')}, recomputed ${hash.toString('hex')} (the event's content changed after it was written)`);
        }
        cur.version = version;
        cur.hash = stored;
        // Newest snapshot seen (rows and head agree within one); the head's hash is read only on the row
        // of the head's version (the only row it is compared with), which spares parsing it on every row.
        cur.head = { version: r[15], hash: r[16] };
      }
      if (!pending) break;
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
      return done({
        aggregateType: o.aggregate_type,
        aggregateId: o.aggregate_id,
        version: 1,
        eventId: null,
        reason: `events 1..${o.version} are missing (the aggregate head is at version ${o.version})`,
      });
    }
    return done();
  } catch (err) {
    if (err instanceof OutboxError) throw err;
    throw pgFailure(err, 'verifying the hash chain failed');
  } finally {
    // A page still asked for when a broken link ended the walk early: wait for it, so that the client is
    // free again when this returns, and ignore what it brings.
    if (pending) await pending.catch(() => undefined);
  }
}
