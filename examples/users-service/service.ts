import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { ident } from '../../core/pg';
import { appendEvents, withTransaction, type NewEvent } from '../../writer/index';

/**
 * The demo's users service: what a real service does to record its history. Every command changes the
 * service's own state table and appends the event describing the change in ONE transaction (writer/
 * `withTransaction` + `appendEvents`), so the event exists if and only if the change committed.
 * Optimistic concurrency is the HTTP story: the client sends the version it last saw as `If-Match`; a
 * mismatch is answered `412 Precondition Failed` with the current version as the ETag.
 */

/** Who is asking, from which request (becomes actor_id, trace_id, correlation_id of the event). */
export interface RequestMeta {
  actorId: string;
  traceId: string;
  correlationId: string;
}

/** An HTTP-like answer: 200/201 with the new ETag (aggregate version), or 412 with the current one. */
export type ServiceResponse = { status: 200 | 201; etag: number; eventId: string; outboxId: string } | { status: 412; etag: number; expectedVersion: number };

export interface UsersServiceOptions {
  pool: pg.Pool;
  /** PostgreSQL schema of the outbox tables (the service's table lives there too). */
  schema: string;
}

/** The service's own state table (the projector's read model is the separate `users` view). */
export const SERVICE_TABLE = 'demo_service_users';

/** A request's metadata with a fresh W3C-style trace id. */
export function newRequest(actorId: string, correlationId: string): RequestMeta {
  return { actorId, traceId: randomBytes(16).toString('hex'), correlationId };
}

export class UsersService {
  private readonly pool: pg.Pool;
  private readonly schema: string;
  private readonly table: string;

  constructor(options: UsersServiceOptions) {
    this.pool = options.pool;
    this.schema = options.schema;
    this.table = `${ident(options.schema)}.${ident(SERVICE_TABLE)}`;
  }

  /** Create the service's state table (idempotent). */
  async init(): Promise<void> {
    await this.pool.query(
      `CREATE TABLE IF NOT EXISTS ${this.table} (
         user_id text PRIMARY KEY, email text NOT NULL, name text NOT NULL, active boolean NOT NULL DEFAULT true,
         version bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
    );
  }

  /** POST /users: a new user (expected version 0: the id must be unused). */
  register(userId: string, email: string, name: string, req: RequestMeta): Promise<ServiceResponse> {
    return this.command(userId, 0, { eventType: 'UserRegistered', schemaVersion: 1, payload: { email, name } }, req, 201, (client, version) =>
      client.query(`INSERT INTO ${this.table} (user_id, email, name, version) VALUES ($1, $2, $3, $4)`, [userId, email, name, version]),
    );
  }

  /** PUT /users/:id/email with If-Match. */
  changeEmail(userId: string, newEmail: string, ifMatch: number | undefined, req: RequestMeta, client?: pg.ClientBase): Promise<ServiceResponse> {
    return this.command(
      userId,
      ifMatch,
      { eventType: 'UserEmailChanged', schemaVersion: 2, payload: { new_email: newEmail, verified: false } },
      req,
      200,
      (c, version) => c.query(`UPDATE ${this.table} SET email = $2, version = $3, updated_at = now() WHERE user_id = $1`, [userId, newEmail, version]),
      client,
    );
  }

  /** PUT /users/:id/name with If-Match. */
  rename(userId: string, firstName: string, lastName: string, ifMatch: number | undefined, req: RequestMeta): Promise<ServiceResponse> {
    return this.command(userId, ifMatch, { eventType: 'UserRenamed', schemaVersion: 2, payload: { first_name: firstName, last_name: lastName } }, req, 200, (c, version) =>
      c.query(`UPDATE ${this.table} SET name = $2, version = $3, updated_at = now() WHERE user_id = $1`, [userId, `${firstName} ${lastName}`.trim(), version]),
    );
  }

  /** DELETE /users/:id (a deactivation; the history stays). */
  deactivate(userId: string, reason: string, ifMatch: number | undefined, req: RequestMeta): Promise<ServiceResponse> {
    return this.command(userId, ifMatch, { eventType: 'UserDeactivated', schemaVersion: 1, payload: { reason } }, req, 200, (c, version) =>
      c.query(`UPDATE ${this.table} SET active = false, version = $2, updated_at = now() WHERE user_id = $1`, [userId, version]),
    );
  }

  /**
   * Run `fn(client)` inside one open transaction and commit when it returns: `fn` appends through the
   * given client (e.g. `changeEmail(..., client)`) and may take its time, as a slow request would.
   */
  inTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return withTransaction(this.pool, fn);
  }

  /** Append the event first (its version is the new ETag; a conflict writes nothing), then change the state row. */
  private async command(
    userId: string,
    expectedVersion: number | undefined,
    event: Pick<NewEvent, 'eventType' | 'schemaVersion' | 'payload'>,
    req: RequestMeta,
    okStatus: 200 | 201,
    applyState: (client: pg.ClientBase, version: number) => Promise<unknown>,
    client?: pg.ClientBase,
  ): Promise<ServiceResponse> {
    const run = async (c: pg.ClientBase): Promise<ServiceResponse> => {
      const result = await appendEvents(
        c,
        [{ aggregateType: 'user', aggregateId: userId, ...event, actorId: req.actorId, traceId: req.traceId, correlationId: req.correlationId }],
        { schema: this.schema, ...(expectedVersion !== undefined ? { expectedVersion } : {}) },
      );
      if (result.status === 'conflict') return { status: 412, etag: result.currentVersion, expectedVersion: result.expectedVersion };
      const appended = result.events[0]!;
      await applyState(c, appended.aggregateVersion);
      return { status: okStatus, etag: appended.aggregateVersion, eventId: appended.eventId, outboxId: appended.id };
    };
    return client ? run(client) : withTransaction(this.pool, run);
  }
}
