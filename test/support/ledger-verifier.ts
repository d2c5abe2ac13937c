import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import { reduceUser, type UserState } from '../../projector/projections/users';
import { checkDelivery, type DeliveryReport } from './delivery-check';

/**
 * The proof-suite verifier (issue 8). The ledger is the set of committed outbox rows. The evidence is
 * read back independently of the relay's and projector's own bookkeeping:
 *  - the topics, consumed from the beginning (checkDelivery): lost, duplicated, reordered per aggregate,
 *    unexpected (messages of rolled-back / unknown events);
 *  - the projections the projector built: `audit_log` (one row per event_id; extra rows are
 *    double-applied) and the `users` read model compared with an independent fold of the ledger
 *    (`events_applied` above the fold's count = an event applied twice; any other difference is a
 *    mismatch; a user or event missing from the read model is not_applied).
 * Figures are JSON: { lost, duplicated, reordered, double_applied, ... }.
 */
export interface LedgerReport {
  committed: number;
  messages: number;
  lost: number;
  /** Extra copies on the topic (at-least-once after a crash; harmless to an exactly-once projector). */
  duplicated: number;
  /** Aggregates whose first occurrences on the topic are not in version order. */
  reordered: number;
  unexpected: number;
  /** Events applied more than once by the projector (audit_log extra rows + users rows folded too often). */
  double_applied: number;
  /** Committed events missing from audit_log, or users missing from the read model. */
  not_applied: number;
  /** users rows that differ from the fold of the ledger in any other way. */
  projection_mismatch: number;
  lostEventIds: string[];
  reorderedAggregates: string[];
  mismatchedUsers: string[];
}

export interface VerifyOptions {
  /** Restrict the ledger (SQL condition on outbox), e.g. to exclude deliberately parked aggregates. */
  where?: string;
  schema?: string;
  timeoutMs?: number;
  /** Also verify the projections (audit_log, users); wait up to timeoutMs for them to catch up. */
  projections?: boolean;
}

interface LedgerRow {
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: string;
  event_type: string;
  payload: Record<string, unknown>;
  occurred_at: Date;
}

async function readLedger(db: pg.Pool, schema: string, where?: string): Promise<LedgerRow[]> {
  const { rows } = await db.query<LedgerRow>(
    `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version::text, event_type, payload, occurred_at
       FROM "${schema}".outbox ${where ? `WHERE ${where}` : ''} ORDER BY id`, // id order = version order within an aggregate
  );
  return rows;
}

/** Fold the ledger's user events (in version order) into the expected read model. */
export function foldLedgerUsers(rows: LedgerRow[]): Map<string, UserState> {
  const users = new Map<string, UserState>();
  for (const r of rows) {
    if (r.aggregate_type !== 'user') continue;
    const next = reduceUser(users.get(r.aggregate_id) ?? null, {
      eventId: r.event_id,
      eventType: r.event_type,
      aggregateType: r.aggregate_type,
      aggregateId: r.aggregate_id,
      aggregateVersion: Number(r.aggregate_version),
      occurredAt: r.occurred_at,
      payload: r.payload,
    });
    if (!('rejected' in next)) users.set(r.aggregate_id, next);
  }
  return users;
}

interface ProjectionFigures {
  double_applied: number;
  not_applied: number;
  projection_mismatch: number;
  mismatchedUsers: string[];
}

async function checkProjections(db: pg.Pool, schema: string, ledger: LedgerRow[]): Promise<ProjectionFigures> {
  const ids = ledger.map((r) => r.event_id);
  const audit = await db.query<{ applied: number; extra: number }>(
    `SELECT count(DISTINCT event_id)::int AS applied, (count(*) - count(DISTINCT event_id))::int AS extra
       FROM "${schema}".audit_log WHERE event_id = ANY($1::text[])`,
    [ids],
  );
  const expected = foldLedgerUsers(ledger);
  const { rows } = await db.query<{ user_id: string; email: string; active: boolean; version: string; events_applied: number }>(
    `SELECT user_id, email, active, version::text, events_applied FROM "${schema}".users WHERE user_id = ANY($1::text[])`,
    [[...expected.keys()]],
  );
  let doubleUsers = 0;
  let mismatch = 0;
  const mismatchedUsers: string[] = [];
  for (const r of rows) {
    const want = expected.get(r.user_id)!;
    if (r.events_applied > want.eventsApplied) doubleUsers += r.events_applied - want.eventsApplied;
    else if (r.events_applied !== want.eventsApplied || Number(r.version) !== want.version || r.email !== want.email || r.active !== want.active) {
      mismatch += 1;
      mismatchedUsers.push(r.user_id);
    }
  }
  const a = audit.rows[0]!;
  return {
    double_applied: a.extra + doubleUsers,
    not_applied: ledger.length - a.applied + (expected.size - rows.length),
    projection_mismatch: mismatch,
    mismatchedUsers: mismatchedUsers.slice(0, 20),
  };
}

/** Wait until the projections applied every ledger event (or the time limit), then check them. */
async function settledProjections(db: pg.Pool, schema: string, ledger: LedgerRow[], timeoutMs: number): Promise<ProjectionFigures> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const f = await checkProjections(db, schema, ledger).catch(() => undefined);
    if (f && f.not_applied === 0 && f.projection_mismatch === 0) return f;
    if (Date.now() > deadline) return f ?? (await checkProjections(db, schema, ledger));
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function verifyLedger(db: pg.Pool, kafka: Kafka, topics: string[], options: VerifyOptions = {}): Promise<LedgerReport> {
  const schema = options.schema ?? 'public';
  const timeoutMs = options.timeoutMs ?? 120_000;
  const delivery: DeliveryReport = await checkDelivery(db, kafka, topics, { timeoutMs, schema, ...(options.where ? { where: options.where } : {}) });
  let projections: ProjectionFigures = { double_applied: 0, not_applied: 0, projection_mismatch: 0, mismatchedUsers: [] };
  if (options.projections) projections = await settledProjections(db, schema, await readLedger(db, schema, options.where), timeoutMs);
  return {
    committed: delivery.committed,
    messages: delivery.messages,
    lost: delivery.lost,
    duplicated: delivery.duplicates,
    reordered: delivery.reordered,
    unexpected: delivery.unexpected,
    ...projections,
    lostEventIds: delivery.lostEventIds,
    reorderedAggregates: delivery.reorderedAggregates,
  };
}

/** The figures line of a scenario: one JSON line on stdout, `{"scenario": ..., ...}` (id lists dropped when empty). */
export function printFigures(scenario: string, figures: object): void {
  const out: Record<string, unknown> = { scenario };
  for (const [k, v] of Object.entries(figures)) if (!(Array.isArray(v) && v.length === 0)) out[k] = v;
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
