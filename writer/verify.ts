import { hash as sha } from 'node:crypto';
import pg from 'pg';
import { OutboxError } from '../core/errors';
import { ident, pgFailure } from '../core/pg';
import { ZERO_HASH } from '../event/hash-chain';

export interface VerifyChainOptions {
  /** Schema of the outbox tables; default: unqualified names (the connection's search_path). */
  schema?: string;
  /** Only this aggregate; default: all aggregates. */
  aggregate?: { type: string; id: string };
  /** No longer used: the rows are streamed in one COPY per key range, not read in pages. */
  batchSize?: number;
  /**
   * Key ranges of aggregates verified at once, each over a connection of its own (needs a pg.Pool with
   * that many connections; with a single client the ranges are read one after another). Default 1.
   */
  parallelism?: number;
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

/**
 * Columns of the COPY, in binary format: fields 0..12 are the 13 canonical fields already in their
 * canonical text forms (event_id::text, version::text, payload::text; text travels in binary COPY as its
 * raw UTF-8 bytes), then prev_hash and hash (raw bytes), then the aggregate head's version (text) and, on
 * the row of the head's version only, its hash; last occurred_at as binary (microseconds since
 * 2000-01-01 UTC). Field 6 (occurred_at's canonical text) is NULL for years 1..9999, whose canonical text
 * this process prints from field 17 exactly as to_char does (formatting it is most of what to_char costs
 * the server); outside that range the server sends to_char's text itself.
 */
const FIELDS = 18;
const OCCURRED_AT = 6;
const OCCURRED_AT_BINARY = 17;

/**
 * COPY (…) TO STDOUT as a pg Submittable: hands every CopyData chunk to `onData` as it arrives (the
 * socket is read only as fast as `onData` returns, so nothing piles up), resolves when the server is
 * ready again.
 */
class CopyOut {
  readonly done: Promise<void>;
  private settle!: { resolve: () => void; reject: (err: unknown) => void };
  private failed: unknown;

  constructor(
    private readonly text: string,
    private readonly onData: (chunk: Buffer) => void,
  ) {
    this.done = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
  }

  submit(connection: { query(text: string): void }): void {
    connection.query(this.text);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    if (this.failed !== undefined) return;
    try {
      this.onData(msg.chunk);
    } catch (err) {
      this.failed = err;
    }
  }

  handleError(err: unknown): void {
    this.failed ??= err;
    this.settle.reject(this.failed);
  }

  handleReadyForQuery(): void {
    if (this.failed !== undefined) this.settle.reject(this.failed);
    else this.settle.resolve();
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyInResponse(connection: { sendCopyFail(msg: string): void }): void {
    connection.sendCopyFail('not a COPY FROM');
  }
}

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const COMMA = 0x2c;
const COLON = 0x3a;
const DASH = 0x2d;

const DAY_US = 86_400_000_000;
/** 2000-01-01T00:00:00Z (PostgreSQL's timestamp epoch) in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;

function digits2(out: Buffer, o: number, n: number): void {
  out[o] = 48 + ((n / 10) | 0);
  out[o + 1] = 48 + (n % 10);
}

/** A day's `YYYY-MM-DDT` (years 1..9999), as to_char's YYYY-MM-DD prints it. */
function dayPrefix(day: number): Buffer {
  const d = new Date(PG_EPOCH_MS + day * 86_400_000);
  const y = d.getUTCFullYear();
  const text = `${String(y).padStart(4, '0')}-${String(d.getUTCMonth() + 1).padStart(2, '0')}-${String(d.getUTCDate()).padStart(2, '0')}T`;
  return Buffer.from(text, 'latin1');
}

function asciiNumber(b: Buffer, start: number, end: number): number {
  let i = start;
  const negative = b[i] === DASH;
  if (negative) i++;
  if (end - i > 15) return Number(b.toString('latin1', start, end));
  let n = 0;
  for (; i < end; i++) n = n * 10 + (b[i]! - 48);
  return negative ? -n : n;
}

/** Walks one key range's rows (in aggregate and version order) and stops at its first broken link. */
class RangeWalker {
  checked = 0;
  broken: BrokenLink | undefined;
  private pending: Buffer | undefined;
  private headerSeen = false;
  private trailerSeen = false;
  private scratch = Buffer.allocUnsafe(64 * 1024);
  private readonly starts = new Int32Array(FIELDS);
  private readonly lengths = new Int32Array(FIELDS);
  private cur: { typeBytes: Buffer; idBytes: Buffer; type: string; id: string; version: number; hash: Buffer; headVersion: string | null; headHash: Buffer | null } | undefined;

  onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = undefined;
    }
    let pos = 0;
    if (!this.headerSeen) {
      if (buf.length < 19) {
        this.pending = Buffer.from(buf);
        return;
      }
      if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new OutboxError('INTERNAL', 'COPY answered without the binary signature');
      pos = 19 + buf.readInt32BE(15);
      this.headerSeen = true;
    }
    while (pos + 2 <= buf.length) {
      const count = buf.readInt16BE(pos);
      if (count === -1) {
        this.trailerSeen = true;
        return;
      }
      if (count !== FIELDS) throw new OutboxError('INTERNAL', `COPY answered ${count} fields, ${FIELDS} expected`);
      let p = pos + 2;
      let complete = true;
      for (let f = 0; f < FIELDS; f++) {
        if (p + 4 > buf.length) {
          complete = false;
          break;
        }
        const len = buf.readInt32BE(p);
        p += 4;
        this.starts[f] = p;
        this.lengths[f] = len;
        if (len > 0) p += len;
        if (p > buf.length) {
          complete = false;
          break;
        }
      }
      if (!complete) break;
      if (this.broken === undefined) this.row(buf);
      pos = p;
    }
    if (pos < buf.length) this.pending = Buffer.from(buf.subarray(pos));
  }

  private text(buf: Buffer, f: number): string | null {
    const len = this.lengths[f]!;
    return len < 0 ? null : buf.toString('utf8', this.starts[f]!, this.starts[f]! + len);
  }

  private bytes(buf: Buffer, f: number): Buffer | null {
    const len = this.lengths[f]!;
    return len < 0 ? null : Buffer.from(buf.subarray(this.starts[f]!, this.starts[f]! + len));
  }

  private same(buf: Buffer, f: number, key: Buffer): boolean {
    const s = this.starts[f]!;
    const len = this.lengths[f]!;
    return len === key.length && buf.compare(key, 0, key.length, s, s + len) === 0;
  }

  /** The head did not end where the last event did: the aggregate's break, if any. */
  private closeAggregate(): BrokenLink | undefined {
    const cur = this.cur;
    if (!cur) return undefined;
    const headVersion = cur.headVersion;
    if (headVersion === null || Number(headVersion) !== cur.version || !cur.headHash?.equals(cur.hash)) {
      const missing = headVersion !== null && Number(headVersion) > cur.version;
      return {
        aggregateType: cur.type,
        aggregateId: cur.id,
        version: missing ? cur.version + 1 : cur.version,
        eventId: null,
        reason: missing
          ? `events ${cur.version + 1}..${headVersion} are missing (the aggregate head is at version ${headVersion})`
          : `the aggregate head (version ${headVersion ?? 'none'}) does not point at the last event (version ${cur.version})`,
      };
    }
    return undefined;
  }

  private row(buf: Buffer): void {
    const { starts, lengths } = this;
    const version = asciiNumber(buf, starts[3]!, starts[3]! + lengths[3]!);
    let cur = this.cur;
    if (!cur || !this.same(buf, 2, cur.idBytes) || !this.same(buf, 1, cur.typeBytes)) {
      this.broken = this.closeAggregate();
      if (this.broken) return;
      cur = this.cur = {
        typeBytes: this.bytes(buf, 1)!,
        idBytes: this.bytes(buf, 2)!,
        type: this.text(buf, 1)!,
        id: this.text(buf, 2)!,
        version: 0,
        hash: ZERO_HASH,
        headVersion: this.text(buf, 15),
        headHash: this.bytes(buf, 16),
      };
    }
    const link = (reason: string): void => {
      this.broken = { aggregateType: cur.type, aggregateId: cur.id, version, eventId: this.text(buf, 0), reason };
    };
    if (version !== cur.version + 1) {
      if (version > cur.version + 1) {
        this.broken = {
          aggregateType: cur.type,
          aggregateId: cur.id,
          version: cur.version + 1,
          eventId: null,
          reason: `version ${cur.version + 1} is missing (next stored version is ${version})`,
        };
      } else link(`version ${version} follows version ${cur.version}`);
      return;
    }
    const prevStart = starts[13]!;
    if (lengths[13] !== 32 || buf.compare(cur.hash, 0, 32, prevStart, prevStart + 32) !== 0) {
      const prev = this.bytes(buf, 13) ?? Buffer.alloc(0);
      link(`prev_hash ${prev.toString('hex')} does not link to the hash of version ${cur.version} (${cur.hash.toString('hex')})`);
      return;
    }
    // prev_hash ‖ the 13 netstrings, built from the raw bytes the server sent (no decoding, no re-encoding).
    let need = 32 + 32;
    for (let f = 0; f < 13; f++) need += lengths[f]! < 0 ? 2 : lengths[f]! + 12;
    if (need > this.scratch.length) this.scratch = Buffer.allocUnsafe(Math.max(need, this.scratch.length * 2));
    const out = this.scratch;
    buf.copy(out, 0, prevStart, prevStart + 32);
    let o = 32;
    for (let f = 0; f < 13; f++) {
      const len = lengths[f]!;
      if (f === OCCURRED_AT && len < 0 && lengths[OCCURRED_AT_BINARY] === 8) {
        o = this.occurredAt(buf, out, o);
        continue;
      }
      if (len < 0) {
        out[o++] = DASH;
        out[o++] = COMMA;
        continue;
      }
      if (len < 10) out[o++] = 48 + len;
      else o += out.write(String(len), o, 'latin1');
      out[o++] = COLON;
      const s = starts[f]!;
      buf.copy(out, o, s, s + len);
      o += len;
      out[o++] = COMMA;
    }
    const hash = sha('sha256', out.subarray(0, o), 'buffer');
    this.checked++;
    const storedStart = starts[14]!;
    if (lengths[14] !== 32 || hash.compare(buf, storedStart, storedStart + 32) !== 0) {
      const stored = this.bytes(buf, 14) ?? Buffer.alloc(0);
      link(`hash mismatch: stored ${stored.toString('hex')}, recomputed ${hash.toString('hex')} (the event's content changed after it was written)`);
      return;
    }
    cur.version = version;
    cur.hash = hash;
    // Newest snapshot seen (rows and head agree within one); the head's hash is sent only on the row of the
    // head's version (the only row it is compared with).
    if (lengths[16]! >= 0 || cur.headHash !== null) {
      cur.headVersion = this.text(buf, 15);
      cur.headHash = this.bytes(buf, 16);
    }
  }

  private lastDay = NaN;
  private lastPrefix: Buffer = Buffer.alloc(0);

  /**
   * occurred_at's netstring `27:YYYY-MM-DDTHH:MM:SS.ffffffZ,` from its binary value (years 1..9999: the
   * server sent no text), byte for byte what to_char(… AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') prints.
   */
  private occurredAt(buf: Buffer, out: Buffer, o: number): number {
    const at = this.starts[OCCURRED_AT_BINARY]!;
    const hi = buf.readInt32BE(at);
    const lo = buf.readUInt32BE(at + 4);
    let day: number;
    let us: number;
    if (hi > -0x100000 && hi < 0x100000) {
      const v = hi * 0x100000000 + lo; // exact: |v| < 2^52
      day = Math.floor(v / DAY_US);
      us = v - day * DAY_US;
    } else {
      const v = (BigInt(hi) << 32n) + BigInt(lo);
      const d = v >= 0n ? v / BigInt(DAY_US) : -((-v + BigInt(DAY_US) - 1n) / BigInt(DAY_US));
      day = Number(d);
      us = Number(v - d * BigInt(DAY_US));
    }
    if (day !== this.lastDay) {
      this.lastDay = day;
      this.lastPrefix = dayPrefix(day);
    }
    const prefix = this.lastPrefix;
    const len = prefix.length + 16;
    o += out.write(String(len), o, 'latin1');
    out[o++] = COLON;
    prefix.copy(out, o);
    o += prefix.length;
    const secs = Math.floor(us / 1_000_000);
    const frac = us - secs * 1_000_000;
    digits2(out, o, Math.floor(secs / 3600));
    out[o + 2] = COLON;
    digits2(out, o + 3, Math.floor(secs / 60) % 60);
    out[o + 5] = COLON;
    digits2(out, o + 6, secs % 60);
    out[o + 8] = 0x2e;
    let f = frac;
    for (let i = 14; i >= 9; i--) {
      out[o + i] = 48 + (f % 10);
      f = Math.floor(f / 10);
    }
    out[o + 15] = 0x5a;
    o += 16;
    out[o++] = COMMA;
    return o;
  }

  /** After the COPY: the last aggregate's head, and a stream that ended early is an error. */
  finish(): void {
    if (!this.trailerSeen) throw new OutboxError('INTERNAL', 'COPY ended without its trailer');
    if (this.broken === undefined) this.broken = this.closeAggregate();
  }
}

type Range = { from?: [string, string]; to?: [string, string] };

/**
 * Recompute the hash chain of every aggregate (or one) from the stored rows, in aggregate and version
 * order: versions must run 1..n without gaps, each prev_hash must equal the previous event's hash (the
 * zero hash for version 1), each hash must equal SHA-256(prev_hash ‖ canonical encoding), and the
 * aggregate head (outbox_aggregates) must point at the last event. Returns the first broken link in
 * that order; a broken chain is a returned value, not an exception.
 *
 * The rows are streamed by COPY … TO STDOUT (FORMAT binary), so the canonical encoding is assembled from
 * the very bytes the server sends. With `parallelism` n > 1 and a pool, the aggregates are cut into n key
 * ranges read at once over n connections; the result (first broken link, `checked`) is the same as with
 * one range, since the first break is the one in the lowest range that has any, and every range below it
 * is verified to its end.
 */
export async function verifyChain(db: pg.ClientBase | pg.Pool, options: VerifyChainOptions = {}): Promise<VerifyChainResult> {
  const q = options.schema === undefined ? '' : `${ident(options.schema)}.`;
  const parallelism = Math.max(1, Math.floor(options.parallelism ?? 1));
  const started = process.hrtime.bigint();
  let checked = 0;
  const done = (firstBroken?: BrokenLink): VerifyChainResult => {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const result: VerifyChainResult = { ok: firstBroken === undefined, checked, eventsPerSecond: seconds > 0 ? Math.round(checked / seconds) : 0 };
    if (firstBroken) result.firstBroken = firstBroken;
    return result;
  };
  const lit = (v: string): string => pg.escapeLiteral(v);
  // A pool by its shape (an application may load its own copy of pg, whose Pool is another class).
  const isPool = typeof (db as { totalCount?: unknown }).totalCount === 'number';
  const withConnection = async <T>(fn: (c: pg.ClientBase) => Promise<T>): Promise<T> => {
    if (!isPool) return fn(db as pg.ClientBase);
    const c = await (db as pg.Pool).connect();
    try {
      return await fn(c);
    } finally {
      c.release();
    }
  };

  const copyText = (range: Range): string => {
    const where: string[] = [];
    if (options.aggregate) where.push(`o.aggregate_type = ${lit(options.aggregate.type)} AND o.aggregate_id = ${lit(options.aggregate.id)}`);
    if (range.from) where.push(`(o.aggregate_type, o.aggregate_id) >= (${lit(range.from[0])}, ${lit(range.from[1])})`);
    if (range.to) where.push(`(o.aggregate_type, o.aggregate_id) < (${lit(range.to[0])}, ${lit(range.to[1])})`);
    return `COPY (SELECT o.event_id::text, o.aggregate_type, o.aggregate_id, o.aggregate_version::text,
        o.event_type, o.schema_version::text,
        CASE WHEN o.occurred_at >= '0001-01-01 00:00:00+00' AND o.occurred_at < '10000-01-01 00:00:00+00' THEN NULL
             ELSE to_char(o.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END,
        o.actor_id, o.trace_id, o.correlation_id, o.causation_id, o.traceparent, o.payload::text, o.prev_hash, o.hash,
        a.version::text, CASE WHEN a.version = o.aggregate_version THEN a.last_hash END,
        CASE WHEN o.occurred_at >= '0001-01-01 00:00:00+00' AND o.occurred_at < '10000-01-01 00:00:00+00' THEN o.occurred_at END
      FROM ${q}outbox o LEFT JOIN ${q}outbox_aggregates a ON a.aggregate_type = o.aggregate_type AND a.aggregate_id = o.aggregate_id
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY o.aggregate_type, o.aggregate_id, o.aggregate_version) TO STDOUT (FORMAT binary)`;
  };

  try {
    // Key ranges: cut points taken from the heads, evenly by count (any key will do: the ranges cover everything).
    const ranges: Range[] = [];
    if (parallelism > 1 && !options.aggregate) {
      const cuts = await withConnection(async (c) => {
        const total = Number((await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${q}outbox_aggregates`)).rows[0]?.n ?? 0);
        const keys: Array<[string, string]> = [];
        for (let k = 1; k < parallelism && total >= parallelism; k++) {
          const r = await c.query<{ t: string; i: string }>(
            `SELECT aggregate_type AS t, aggregate_id AS i FROM ${q}outbox_aggregates ORDER BY aggregate_type, aggregate_id OFFSET $1 LIMIT 1`,
            [Math.floor((k * total) / parallelism)],
          );
          const row = r.rows[0];
          if (row) keys.push([row.t, row.i]);
        }
        return keys;
      });
      for (let k = 0; k <= cuts.length; k++) {
        const range: Range = {};
        if (k > 0) range.from = cuts[k - 1]!;
        if (k < cuts.length) range.to = cuts[k]!;
        ranges.push(range);
      }
    } else ranges.push({});

    const walkers = ranges.map(() => new RangeWalker());
    // A range above a broken one need not be finished: its rows are then skipped (the stream still drains).
    let lowestBroken = Infinity;
    const walk = async (k: number): Promise<void> => {
      if (k > lowestBroken) return;
      const w = walkers[k]!;
      await withConnection((c) => {
        const copy = new CopyOut(copyText(ranges[k]!), (chunk) => {
          if (k > lowestBroken) w.broken ??= { aggregateType: '', aggregateId: '', version: 0, eventId: null, reason: 'not verified' };
          w.onData(chunk);
          if (w.broken !== undefined && k < lowestBroken) lowestBroken = k;
        });
        void c.query(copy as unknown as pg.QueryConfig);
        return copy.done;
      });
      if (k <= lowestBroken) {
        w.finish();
        if (w.broken !== undefined && k < lowestBroken) lowestBroken = k;
      }
    };
    if (isPool) await Promise.all(ranges.map((_, k) => walk(k)));
    else for (let k = 0; k < ranges.length; k++) await walk(k);

    for (let k = 0; k < walkers.length; k++) {
      const w = walkers[k]!;
      checked += w.checked;
      if (k === lowestBroken) return done(w.broken);
    }

    // Heads without any event (every event of an aggregate removed).
    const headParams: unknown[] = [];
    let headWhere = '';
    if (options.aggregate) {
      headParams.push(options.aggregate.type, options.aggregate.id);
      headWhere = 'AND a.aggregate_type = $1 AND a.aggregate_id = $2';
    }
    const orphan = await withConnection((c) =>
      c.query<{ aggregate_type: string; aggregate_id: string; version: string }>(
        `SELECT a.aggregate_type, a.aggregate_id, a.version::text AS version FROM ${q}outbox_aggregates a
          WHERE a.version > 0 ${headWhere}
            AND NOT EXISTS (SELECT 1 FROM ${q}outbox o WHERE o.aggregate_type = a.aggregate_type AND o.aggregate_id = a.aggregate_id)
          ORDER BY a.aggregate_type, a.aggregate_id LIMIT 1`,
        headParams,
      ),
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
  }
}
