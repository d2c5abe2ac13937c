import { defineProjection, toProjection, type HandlerContext } from '../../../projector/define';
import type { AggregateReducer, ApplyContext, BatchRejection, ProjectedEvent, Projection, ReducibleEvent } from '../../../projector/types';

/** The `users` read model row (also the state of the `user` aggregate as the reducer folds it). */
export interface UserState {
  userId: string;
  email: string;
  emailVerified: boolean;
  displayName: string;
  firstName: string;
  lastName: string;
  active: boolean;
  deactivationReason: string | null;
  /** ISO-8601 UTC (JSON-stable, for snapshots). */
  registeredAt: string;
  updatedAt: string;
  /** aggregate_version of the last applied event. */
  version: number;
  /** Events applied to this row (equals `version` unless an event was applied twice or missed). */
  eventsApplied: number;
}

export const USER_EVENT_TYPES = ['UserRegistered', 'UserEmailChanged', 'UserRenamed', 'UserDeactivated'] as const;

function str(p: Record<string, unknown>, ...names: string[]): string | undefined {
  for (const n of names) if (typeof p[n] === 'string') return p[n] as string;
  return undefined;
}

function splitName(name: string): { firstName: string; lastName: string } {
  const t = name.trim();
  const i = t.indexOf(' ');
  return i < 0 ? { firstName: t, lastName: '' } : { firstName: t.slice(0, i), lastName: t.slice(i + 1).trim() };
}

/**
 * Fold one user event. Accepts the latest payload shapes and the older ones (UserEmailChanged v1
 * `email`, UserRenamed v1 `name`), so it also folds raw outbox rows. Returns a rejection for events that
 * do not fit the state (unknown user, second registration, stale version).
 */
export function reduceUser(state: UserState | null, e: ReducibleEvent): UserState | { rejected: string } {
  const p = (e.payload ?? {}) as Record<string, unknown>;
  const at = e.occurredAt.toISOString();
  if (e.eventType === 'UserRegistered') {
    if (state) return { rejected: `user ${e.aggregateId} is already registered (version ${state.version})` };
    const name = str(p, 'name') ?? '';
    return {
      userId: e.aggregateId,
      email: str(p, 'email') ?? '',
      emailVerified: false,
      displayName: name,
      ...splitName(name),
      active: true,
      deactivationReason: null,
      registeredAt: at,
      updatedAt: at,
      version: e.aggregateVersion,
      eventsApplied: 1,
    };
  }
  if (!state) return { rejected: `${e.eventType} for unknown user ${e.aggregateId}` };
  if (e.aggregateVersion <= state.version)
    return { rejected: `${e.eventType} v${e.aggregateVersion} of user ${e.aggregateId} is not newer than the applied version ${state.version}` };
  const next: UserState = { ...state, updatedAt: at, version: e.aggregateVersion, eventsApplied: state.eventsApplied + 1 };
  switch (e.eventType) {
    case 'UserEmailChanged':
      next.email = str(p, 'new_email', 'email') ?? state.email;
      next.emailVerified = p.verified === true;
      return next;
    case 'UserRenamed': {
      const first = str(p, 'first_name');
      const last = str(p, 'last_name');
      const parts = first !== undefined || last !== undefined ? { firstName: first ?? '', lastName: last ?? '' } : splitName(str(p, 'name') ?? '');
      next.firstName = parts.firstName;
      next.lastName = parts.lastName;
      next.displayName = `${parts.firstName} ${parts.lastName}`.trim();
      return next;
    }
    case 'UserDeactivated':
      next.active = false;
      next.deactivationReason = str(p, 'reason') ?? '';
      return next;
    default:
      return next;
  }
}

/** Reducer of the `user` aggregate for snapshots and loadAggregate (lenient: never rejects). */
export const userReducer: AggregateReducer<UserState | null> = {
  aggregateType: 'user',
  version: 1,
  schemaVersion: 1,
  initial: () => null,
  apply(state, event) {
    const r = reduceUser(state, event);
    return 'rejected' in r ? state : r;
  },
};

const COLUMNS = `user_id text, email text, email_verified boolean, display_name text, first_name text, last_name text, active boolean,
  deactivation_reason text, registered_at timestamptz, updated_at timestamptz, version bigint, events_applied integer`;

interface UserRow {
  user_id: string;
  email: string;
  email_verified: boolean;
  display_name: string;
  first_name: string;
  last_name: string;
  active: boolean;
  deactivation_reason: string | null;
  registered_at: Date;
  updated_at: Date;
  version: string;
  events_applied: number;
}

function fromRow(r: UserRow): UserState {
  return {
    userId: r.user_id,
    email: r.email,
    emailVerified: r.email_verified,
    displayName: r.display_name,
    firstName: r.first_name,
    lastName: r.last_name,
    active: r.active,
    deactivationReason: r.deactivation_reason,
    registeredAt: r.registered_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    version: Number(r.version),
    eventsApplied: r.events_applied,
  };
}

function toRow(s: UserState): Record<string, unknown> {
  return {
    user_id: s.userId,
    email: s.email,
    email_verified: s.emailVerified,
    display_name: s.displayName,
    first_name: s.firstName,
    last_name: s.lastName,
    active: s.active,
    deactivation_reason: s.deactivationReason,
    registered_at: s.registeredAt,
    updated_at: s.updatedAt,
    version: s.version,
    events_applied: s.eventsApplied,
  };
}

const HANDLED = new Set<string>(USER_EVENT_TYPES);

/** Batch fold: read the rows of the batch's users once, fold in memory, upsert the changed rows in one statement. */
async function applyUsers(events: ProjectedEvent[], ctx: ApplyContext): Promise<BatchRejection[]> {
  const t = ctx.table('users');
  const ids = [...new Set(events.filter((e) => HANDLED.has(e.event.eventType)).map((e) => e.event.aggregateId))];
  if (ids.length === 0) return [];
  const { rows } = await ctx.client.query<UserRow>(`SELECT * FROM ${t} WHERE user_id = ANY($1::text[])`, [ids]);
  const state = new Map<string, UserState>(rows.map((r) => [r.user_id, fromRow(r)]));
  const dirty = new Set<string>();
  const rejections: BatchRejection[] = [];
  events.forEach((pe, index) => {
    const e = pe.event;
    if (!HANDLED.has(e.eventType)) return;
    const r = reduceUser(state.get(e.aggregateId) ?? null, e);
    if ('rejected' in r) {
      rejections.push({ index, reason: r.rejected });
      return;
    }
    state.set(e.aggregateId, r);
    dirty.add(e.aggregateId);
  });
  if (dirty.size > 0) {
    const data = [...dirty].map((id) => toRow(state.get(id)!));
    await ctx.client.query(
      `INSERT INTO ${t} SELECT * FROM json_to_recordset($1::json) AS x(${COLUMNS})
       ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email, email_verified = EXCLUDED.email_verified,
         display_name = EXCLUDED.display_name, first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
         active = EXCLUDED.active, deactivation_reason = EXCLUDED.deactivation_reason, registered_at = EXCLUDED.registered_at,
         updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, events_applied = EXCLUDED.events_applied`,
      [JSON.stringify(data)],
    );
  }
  return rejections;
}

/** The `users` read model: one row per user, readers query the `users` view. */
export const usersProjection = defineProjection({
  name: 'users',
  aggregateTypes: ['user'],
  tables: {
    users: `CREATE TABLE users (
        user_id text PRIMARY KEY, email text NOT NULL, email_verified boolean NOT NULL, display_name text NOT NULL,
        first_name text NOT NULL, last_name text NOT NULL, active boolean NOT NULL, deactivation_reason text,
        registered_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version bigint NOT NULL, events_applied integer NOT NULL);
      CREATE INDEX ON users (email)`,
  },
  handlers: Object.fromEntries(
    USER_EVENT_TYPES.map((t) => [
      t,
      async (event: ProjectedEvent['event'], ctx: HandlerContext) => {
        const [r] = await applyUsers([{ event, schemaId: ctx.schemaId, source: ctx.source }], ctx);
        return r ? { rejected: r.reason } : undefined;
      },
    ]),
  ),
  unhandledEventTypes: 'skip',
  applyBatch: applyUsers,
});

/** The users projection reading `topics` (tests and benchmarks point it at a topic of their own). */
export function createUsersProjection(options: { topics: string[]; name?: string }): Projection {
  const p = toProjection(usersProjection, { topicMap: {}, topicSuffix: '.events' });
  return { ...p, name: options.name ?? p.name, topics: options.topics };
}
