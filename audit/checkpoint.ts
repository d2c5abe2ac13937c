import type pg from 'pg';
import type { KeyObject } from 'node:crypto';
import { OutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { ident, withTransaction } from '../core/pg';
import { waitFor } from '../core/wait';
import { signBytes, verifyBytes, type SigningKey } from './keys';
import { compareHeads, merkleRoot, type AggregateHead } from './merkle';

/**
 * A signed checkpoint (docs/audit.md): the Merkle root over every aggregate's head as of the highest
 * outbox id it covers, with the number of events and aggregates at that id, when it was taken and by
 * which key. Heads "as of" an id come from the history rows (the newest version per aggregate among
 * rows with id ≤ covered id), never from outbox_aggregates, so later events do not change an old
 * checkpoint's root and an auditor can recompute it from the history alone.
 */
export interface Checkpoint {
  format: 1;
  /** The outbox schema the checkpoint is of. */
  schema: string;
  /** Every row with id ≤ this (decimal) is covered; no row with a lower id can still appear. */
  coveredId: string;
  /** Events with id ≤ coveredId (decimal). */
  eventCount: string;
  aggregateCount: number;
  /** Merkle root, 64 hex digits. */
  root: string;
  /** When it was taken (ISO 8601, UTC). */
  timestamp: string;
  /** First 16 hex digits of SHA-256 over the raw Ed25519 public key. */
  keyId: string;
}

export interface SignedCheckpoint extends Checkpoint {
  /** Ed25519 signature over signedBytes(checkpoint), base64. */
  signature: string;
}

/** The state of the history at a covered id. */
export interface HistoryAt {
  coveredId: bigint;
  eventCount: bigint;
  heads: AggregateHead[];
  root: Buffer;
}

const SIGNING_CONTEXT = 'kafka-outbox checkpoint v1';

function netstring(v: string): Buffer {
  const b = Buffer.from(v, 'utf8');
  return Buffer.concat([Buffer.from(`${b.length}:`, 'utf8'), b, Buffer.from(',', 'utf8')]);
}

/**
 * The bytes that are signed: netstrings of the context "kafka-outbox checkpoint v1", schema, coveredId,
 * eventCount, aggregateCount, root, timestamp, keyId, in this order.
 */
export function signedBytes(c: Checkpoint): Buffer {
  return Buffer.concat([SIGNING_CONTEXT, c.schema, c.coveredId, c.eventCount, String(c.aggregateCount), c.root, c.timestamp, c.keyId].map(netstring));
}

export function signCheckpoint(c: Checkpoint, key: SigningKey): SignedCheckpoint {
  if (c.keyId !== key.keyId) throw new OutboxError('INTERNAL', `checkpoint names key ${c.keyId}, signed with ${key.keyId}`);
  return { ...c, signature: signBytes(key, signedBytes(c)).toString('base64') };
}

export function verifyCheckpointSignature(c: SignedCheckpoint, publicKey: KeyObject): boolean {
  return verifyBytes(publicKey, signedBytes(c), Buffer.from(c.signature, 'base64'));
}

/** A checkpoint from its JSON text; throws PAYLOAD_INVALID naming the field when it is not one. */
export function parseCheckpoint(text: string, where: string): SignedCheckpoint {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new OutboxError('PAYLOAD_INVALID', `${where}: not JSON`);
  }
  const o = v as Record<string, unknown>;
  const str = (k: string, re: RegExp): string => {
    const x = o?.[k];
    if (typeof x !== 'string' || !re.test(x)) throw new OutboxError('PAYLOAD_INVALID', `${where}: field ${k} is missing or malformed`, { details: { field: k } });
    return x;
  };
  if (o?.format !== 1) throw new OutboxError('PAYLOAD_INVALID', `${where}: not a checkpoint of format 1`, { details: { field: 'format' } });
  const aggregateCount = o.aggregateCount;
  if (typeof aggregateCount !== 'number' || !Number.isSafeInteger(aggregateCount) || aggregateCount < 0) {
    throw new OutboxError('PAYLOAD_INVALID', `${where}: field aggregateCount is missing or malformed`, { details: { field: 'aggregateCount' } });
  }
  return {
    format: 1,
    schema: str('schema', /^.+$/),
    coveredId: str('coveredId', /^\d+$/),
    eventCount: str('eventCount', /^\d+$/),
    aggregateCount,
    root: str('root', /^[0-9a-f]{64}$/),
    timestamp: str('timestamp', /^\d{4}-\d{2}-\d{2}T[0-9:.]+Z$/),
    keyId: str('keyId', /^[0-9a-f]{16}$/),
    signature: str('signature', /^[A-Za-z0-9+/=]+$/),
  };
}

/**
 * The history as of `coveredId`: every aggregate's head (newest version among rows with id ≤ coveredId)
 * and the event count, read in one REPEATABLE READ snapshot.
 */
export async function historyAt(pool: pg.Pool, options: { schema: string; coveredId: bigint }): Promise<HistoryAt> {
  const s = ident(options.schema);
  return withTransaction(pool, async (client) => {
    await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const { rows } = await client.query<{ aggregate_type: string; aggregate_id: string; version: string; hash: Buffer }>(
      `SELECT DISTINCT ON (aggregate_type, aggregate_id) aggregate_type, aggregate_id, aggregate_version::text AS version, hash
         FROM ${s}.outbox
        WHERE id <= $1::bigint
        ORDER BY aggregate_type, aggregate_id, aggregate_version DESC`,
      [options.coveredId.toString()],
    );
    const count = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${s}.outbox WHERE id <= $1::bigint`, [options.coveredId.toString()]);
    const heads = rows.map((r) => ({ aggregateType: r.aggregate_type, aggregateId: r.aggregate_id, version: BigInt(r.version), hash: r.hash }));
    return { coveredId: options.coveredId, eventCount: BigInt(count.rows[0]?.n ?? '0'), heads, root: merkleRoot(heads) };
  });
}

/**
 * The highest outbox id below which no row can still appear. Ids come from a sequence when a row is
 * inserted, before its transaction commits, so a transaction still open may yet commit a lower id than
 * one already visible. This reads the sequence, then waits until every transaction that held the
 * outbox's insert lock at that moment has ended: each one that drew an id up to that value held it.
 */
export async function stableCoveredId(pool: pg.Pool, options: { schema: string; logger: Logger; timeoutMs?: number; pollMs?: number }): Promise<bigint> {
  const s = ident(options.schema);
  const seq = await pool.query<{ v: string }>(`SELECT (CASE WHEN is_called THEN last_value ELSE 0 END)::text AS v FROM ${s}.outbox_id_seq`);
  const covered = BigInt(seq.rows[0]?.v ?? '0');
  const holdersSql = `SELECT DISTINCT l.virtualtransaction
       FROM pg_catalog.pg_locks l
      WHERE l.locktype = 'relation' AND l.relation = $1::regclass AND l.mode = 'RowExclusiveLock' AND l.granted
        AND l.pid <> pg_catalog.pg_backend_pid()`;
  const table = `${s}.outbox`;
  const holders = async (): Promise<Set<string>> => new Set((await pool.query<{ virtualtransaction: string }>(holdersSql, [table])).rows.map((r) => r.virtualtransaction));
  let waiting = await holders();
  let polled = false;
  await waitFor(
    async () => {
      if (polled) {
        const still = await holders();
        waiting = new Set([...waiting].filter((v) => still.has(v)));
      }
      polled = true;
      if (waiting.size > 0) options.logger.debug({ waiting: waiting.size, coveredId: covered.toString() }, 'checkpoint waits for open outbox writers');
      return waiting.size === 0;
    },
    {
      timeoutMs: options.timeoutMs ?? 60_000,
      every: options.pollMs ?? 100,
      timedOut: () =>
        new OutboxError('DB_BUSY', `a checkpoint at outbox id ${covered} waits for ${waiting.size} open transaction(s) that write the outbox; try again`, {
          details: { coveredId: covered.toString() },
        }),
    },
  );
  return covered;
}

/** Take a checkpoint of the history now, signed with `key`. */
export async function takeCheckpoint(
  pool: pg.Pool,
  options: { schema: string; key: SigningKey; logger: Logger; now?: () => Date; waitTimeoutMs?: number },
): Promise<SignedCheckpoint> {
  return (await takeCheckpointWithHeads(pool, options)).checkpoint;
}

/** A checkpoint and the heads it signs (their Merkle root is its root), e.g. to keep them beside it in a file. */
export async function takeCheckpointWithHeads(
  pool: pg.Pool,
  options: { schema: string; key: SigningKey; logger: Logger; now?: () => Date; waitTimeoutMs?: number },
): Promise<{ checkpoint: SignedCheckpoint; heads: AggregateHead[] }> {
  const coveredId = await stableCoveredId(pool, {
    schema: options.schema,
    logger: options.logger,
    ...(options.waitTimeoutMs !== undefined ? { timeoutMs: options.waitTimeoutMs } : {}),
  });
  const at = await historyAt(pool, { schema: options.schema, coveredId });
  const checkpoint: Checkpoint = {
    format: 1,
    schema: options.schema,
    coveredId: coveredId.toString(),
    eventCount: at.eventCount.toString(),
    aggregateCount: at.heads.length,
    root: at.root.toString('hex'),
    timestamp: (options.now ?? (() => new Date()))().toISOString(),
    keyId: options.key.keyId,
  };
  return { checkpoint: signCheckpoint(checkpoint, options.key), heads: at.heads };
}

/**
 * The first aggregate whose head differs between the heads a checkpoint signed and the heads now (both
 * in any order), as one sentence naming the aggregate and version; undefined when they are the same.
 */
export function firstHeadDifference(
  signed: readonly AggregateHead[],
  now: readonly AggregateHead[],
): { aggregateType: string; aggregateId: string; version: bigint; detail: string } | undefined {
  const a = [...signed].sort(compareHeads);
  const b = [...now].sort(compareHeads);
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    const order = x && y ? compareHeads(x, y) : x ? -1 : 1;
    if (order < 0)
      return {
        aggregateType: x!.aggregateType,
        aggregateId: x!.aggregateId,
        version: 1n,
        detail: `signed with head v${x!.version}, now has no event up to the covered id (events 1..${x!.version} missing)`,
      };
    if (order > 0)
      return {
        aggregateType: y!.aggregateType,
        aggregateId: y!.aggregateId,
        version: 1n,
        detail: `not in the checkpoint, now has events 1..${y!.version} up to the covered id (inserted)`,
      };
    const name = { aggregateType: x!.aggregateType, aggregateId: x!.aggregateId };
    if (x!.version > y!.version)
      return {
        ...name,
        version: y!.version + 1n,
        detail: `signed with head v${x!.version}, now v${y!.version}: missing version ${y!.version + 1n}${x!.version > y!.version + 1n ? `..${x!.version}` : ''}`,
      };
    if (x!.version < y!.version)
      return { ...name, version: x!.version + 1n, detail: `signed with head v${x!.version}, now v${y!.version}: version ${x!.version + 1n} inserted below the covered id` };
    if (!x!.hash.equals(y!.hash))
      return {
        ...name,
        version: x!.version,
        detail: `head v${x!.version} hash ${x!.hash.toString('hex')} signed, ${y!.hash.toString('hex')} now: a version up to ${x!.version} was changed`,
      };
    i++;
    j++;
  }
  return undefined;
}
