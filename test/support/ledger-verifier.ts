import type { Kafka } from 'kafkajs';
import type pg from 'pg';
import { checkDelivery, type DeliveryReport } from './delivery-check';

/**
 * The proof-suite verifier. The ledger is the set of committed outbox rows. The evidence is
 * read back independently of the relay's and projector's own bookkeeping:
 *  - the topics, consumed from the beginning (checkDelivery): lost, duplicated, reordered per aggregate,
 *    unexpected (messages of rolled-back / unknown events);
 *  - the projections the projector built: `audit_log` (one row per event_id; extra rows are
 *    double-applied) and the `users` read model compared with a fold of the ledger written here, apart
 *    from the production reducer, so that a reducer defect shows as a mismatch (`events_applied` above
 *    the fold's count = an event applied twice; any other difference is a mismatch; a user or event
 *    missing from the read model is not_applied). The fold can be replaced (`foldUsers`).
 * Figures are JSON: { lost, duplicated, reordered, double_applied, ... }.
 */
export interface LedgerReport {
  committed: number;
  messages: number;
  lost: number;
  /** Extra copies on the topic (at-least-once after a crash; harmless to an exactly-once projector). */
  duplicated: number;
  /** Extra copies that are not byte-identical (key, value, headers) to the event's first copy. */
  divergent: number;
  /** Aggregates whose k-th copies on the topic are not in version order, or spread over partitions. */
  reordered: number;
  /** Messages of ledger events whose aggregate headers are missing or differ from the ledger. */
  malformed: number;
  unexpected: number;
  /** Events applied more than once by the projector (audit_log extra rows + users rows folded too often). */
  double_applied: number;
  /** Committed events missing from audit_log, or users missing from the read model. */
  not_applied: number;
  /** users rows that differ from the fold of the ledger in any other way. */
  projection_mismatch: number;
  lostEventIds: string[];
  duplicateEventIds: string[];
  reorderedAggregates: string[];
  malformedEventIds: string[];
  mismatchedUsers: string[];
}

export interface VerifyOptions {
  /** Restrict the ledger (SQL condition on outbox), e.g. to exclude deliberately parked aggregates. */
  where?: string;
  /** Schema of the outbox; default: unqualified names (the connection's search_path). */
  schema?: string;
  /** Schema of the read models (audit_log, users); default: unqualified names. */
  projectorSchema?: string;
  timeoutMs?: number;
  /** Also verify the projections (audit_log, users); wait up to timeoutMs for them to catch up. */
  projections?: boolean;
  /** The expected `users` read model from the ledger; default: foldLedgerUsers. */
  foldUsers?: UserFold;
}

export interface LedgerRow {
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: string;
  event_type: string;
  payload: Record<string, unknown>;
  occurred_at: Date;
}

/** `"schema".` or '' (unqualified: the connection's search_path). */
function qualifier(schema: string | undefined): string {
  return schema === undefined ? '' : `"${schema}".`;
}

async function readLedger(db: pg.Pool, schema: string | undefined, where?: string): Promise<LedgerRow[]> {
  const { rows } = await db.query<LedgerRow>(
    `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version::text, event_type, payload, occurred_at
       FROM ${qualifier(schema)}outbox ${where ? `WHERE ${where}` : ''} ORDER BY id`, // id order = version order within an aggregate
  );
  return rows;
}

/** What the verifier compares in a `users` row. */
export interface ExpectedUser {
  email: string;
  active: boolean;
  /** aggregate_version of the last event that applies. */
  version: number;
  /** How many of the user's events apply (each exactly once). */
  eventsApplied: number;
}

export type UserFold = (ledger: LedgerRow[]) => Map<string, ExpectedUser>;

/**
 * The expected `users` read model, folded from the ledger's user events (in version order) by the rules
 * of the domain, independently of examples/users-service/projections/users.ts: a registration creates the user (a
 * second one does not apply), a later event applies when it is newer than the last applied version, an
 * email change sets the address (`new_email`, or the older `email`), a deactivation clears `active`.
 */
export function foldLedgerUsers(rows: LedgerRow[]): Map<string, ExpectedUser> {
  const users = new Map<string, ExpectedUser>();
  for (const r of rows) {
    if (r.aggregate_type !== 'user') continue;
    const version = Number(r.aggregate_version);
    const p = r.payload ?? {};
    const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
    const u = users.get(r.aggregate_id);
    if (r.event_type === 'UserRegistered') {
      if (!u) users.set(r.aggregate_id, { email: text(p.email) ?? '', active: true, version, eventsApplied: 1 });
      continue;
    }
    if (!u || version <= u.version) continue;
    u.version = version;
    u.eventsApplied += 1;
    if (r.event_type === 'UserEmailChanged') u.email = text(p.new_email) ?? text(p.email) ?? u.email;
    if (r.event_type === 'UserDeactivated') u.active = false;
  }
  return users;
}

export interface ProjectionFigures {
  double_applied: number;
  not_applied: number;
  projection_mismatch: number;
  mismatchedUsers: string[];
}

/** A `users` row as the verifier reads it. */
export interface UserRow {
  user_id: string;
  email: string;
  active: boolean;
  version: string;
  events_applied: number;
}

/**
 * Compare the projections with the ledger (pure: the caller reads the database). `audit` counts the
 * ledger's events in audit_log (`applied`: distinct event ids, `extra`: rows beyond one per event id);
 * `users` are the read-model rows of the users the fold expects.
 */
export function compareProjections(input: { ledger: LedgerRow[]; audit: { applied: number; extra: number }; users: UserRow[]; fold?: UserFold }): ProjectionFigures {
  const expected = (input.fold ?? foldLedgerUsers)(input.ledger);
  let doubleUsers = 0;
  let mismatch = 0;
  let present = 0;
  const mismatchedUsers: string[] = [];
  for (const r of input.users) {
    const want = expected.get(r.user_id);
    if (!want) continue;
    present += 1;
    if (r.events_applied > want.eventsApplied) doubleUsers += r.events_applied - want.eventsApplied;
    else if (r.events_applied !== want.eventsApplied || Number(r.version) !== want.version || r.email !== want.email || r.active !== want.active) {
      mismatch += 1;
      mismatchedUsers.push(r.user_id);
    }
  }
  return {
    double_applied: input.audit.extra + doubleUsers,
    not_applied: input.ledger.length - input.audit.applied + (expected.size - present),
    projection_mismatch: mismatch,
    mismatchedUsers: mismatchedUsers.slice(0, 20),
  };
}

async function checkProjections(db: pg.Pool, schema: string | undefined, ledger: LedgerRow[], fold: UserFold | undefined): Promise<ProjectionFigures> {
  const ids = ledger.map((r) => r.event_id);
  const audit = await db.query<{ applied: number; extra: number }>(
    `SELECT count(DISTINCT event_id)::int AS applied, (count(*) - count(DISTINCT event_id))::int AS extra
       FROM ${qualifier(schema)}audit_log WHERE event_id = ANY($1::text[])`,
    [ids],
  );
  const userIds = [...new Set(ledger.filter((r) => r.aggregate_type === 'user').map((r) => r.aggregate_id))];
  const { rows } = await db.query<UserRow>(`SELECT user_id, email, active, version::text, events_applied FROM ${qualifier(schema)}users WHERE user_id = ANY($1::text[])`, [
    userIds,
  ]);
  return compareProjections({ ledger, audit: audit.rows[0]!, users: rows, ...(fold ? { fold } : {}) });
}

/** Wait until the projections applied every ledger event (or the time limit), then check them. */
async function settledProjections(db: pg.Pool, schema: string | undefined, ledger: LedgerRow[], timeoutMs: number, fold: UserFold | undefined): Promise<ProjectionFigures> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const f = await checkProjections(db, schema, ledger, fold).catch(() => undefined);
    if (f && f.not_applied === 0 && f.projection_mismatch === 0) return f;
    if (Date.now() > deadline) return f ?? (await checkProjections(db, schema, ledger, fold));
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function verifyLedger(db: pg.Pool, kafka: Kafka, topics: string[], options: VerifyOptions = {}): Promise<LedgerReport> {
  const schema = options.schema;
  const timeoutMs = options.timeoutMs ?? 120_000;
  const delivery: DeliveryReport = await checkDelivery(db, kafka, topics, {
    timeoutMs,
    ...(schema !== undefined ? { schema } : {}),
    ...(options.where ? { where: options.where } : {}),
  });
  let projections: ProjectionFigures = { double_applied: 0, not_applied: 0, projection_mismatch: 0, mismatchedUsers: [] };
  if (options.projections) projections = await settledProjections(db, options.projectorSchema, await readLedger(db, schema, options.where), timeoutMs, options.foldUsers);
  return {
    committed: delivery.committed,
    messages: delivery.messages,
    lost: delivery.lost,
    duplicated: delivery.duplicates,
    divergent: delivery.divergent,
    reordered: delivery.reordered,
    malformed: delivery.malformed,
    unexpected: delivery.unexpected,
    ...projections,
    lostEventIds: delivery.lostEventIds,
    duplicateEventIds: delivery.duplicateEventIds,
    reorderedAggregates: delivery.reorderedAggregates,
    malformedEventIds: delivery.malformedEventIds,
  };
}

/** The figures line of a scenario: one JSON line on stdout, `{"scenario": ..., ...}` (id lists dropped when empty). */
export function printFigures(scenario: string, figures: object): void {
  const out: Record<string, unknown> = { scenario };
  for (const [k, v] of Object.entries(figures)) if (!(Array.isArray(v) && v.length === 0)) out[k] = v;
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
