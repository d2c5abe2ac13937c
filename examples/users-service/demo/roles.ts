import type pg from 'pg';

/** The least-privilege roles `outbox migrate` creates (its defaults): the service's, the relay's, the projector's. */
export const DEMO_ROLES = { app: 'outbox_app', relay: 'outbox_relay', projector: 'outbox_projector' } as const;

export interface RoleUrls {
  /** Whether the demo's login may act as the roles (else every URL is the demo's own). */
  asRoles: boolean;
  app: string;
  relay: string;
  projector: string;
}

/** `url` whose sessions run as `role` (the `role` setting at connection start: that role's rights and no more). */
function asRole(url: string, role: string): string {
  const u = new URL(url);
  u.searchParams.set('options', [u.searchParams.get('options'), `-c role=${role}`].filter(Boolean).join(' '));
  return u.toString();
}

/**
 * Connection strings of the service, the relay and the projector: the demo's DATABASE_URL acting as each
 * least-privilege role, when its user may (a superuser, or a member of the roles); otherwise that URL.
 */
export async function roleUrls(pool: pg.Pool, url: string): Promise<RoleUrls> {
  const { rows } = await pool.query<{ ok: boolean }>(`SELECT bool_and(pg_has_role(current_user, r, 'MEMBER')) AS ok FROM unnest($1::text[]) AS r`, [Object.values(DEMO_ROLES)]);
  if (rows[0]?.ok !== true) return { asRoles: false, app: url, relay: url, projector: url };
  return { asRoles: true, app: asRole(url, DEMO_ROLES.app), relay: asRole(url, DEMO_ROLES.relay), projector: asRole(url, DEMO_ROLES.projector) };
}
