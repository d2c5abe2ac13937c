import type { OutboxConfig } from '../../../core/config';
import { OutboxError } from '../../../core/errors';
import { ident } from '../../../core/pg';
import { sleep } from '../../../core/retry';
import { newRequest, SERVICE_TABLE, UsersService, type RequestMeta, type ServiceResponse } from '../service';
import { waitUntil } from './check';
import type { DemoPipeline } from './pipeline';
import { DEMO_ROLES } from './roles';
import type { Say } from './setup';

/**
 * The workload, through the TypeScript API (withTransaction + appendEvents): five sign-ups, two clients
 * changing the same user from the same version (the second gets 412 and retries), and one transaction
 * held open while others commit (it commits last and still arrives).
 */

export interface DemoUser {
  id: string;
  key: string;
  email: string;
  name: string;
}

export interface WorkloadStep {
  what: string;
  userId: string;
  request: RequestMeta;
  ifMatch?: number;
  response: ServiceResponse;
}

export interface LateTransaction {
  userId: string;
  outboxId: string;
  eventId: string;
  heldMs: number;
  /** Events of other transactions that committed while this one was open (and their state then). */
  committedMeanwhile: Array<{ outboxId: string; userId: string; deliveredBeforeLateCommit: boolean }>;
}

export interface Workload {
  users: DemoUser[];
  /** The user whose audit history is shown. */
  grace: DemoUser;
  steps: WorkloadStep[];
  /** Client B's answer to its stale If-Match. */
  conflict: ServiceResponse;
  late: LateTransaction;
}

/**
 * The service, on the demo's database: its state table is created by the demo's login and written by the
 * application's role. Records the run (and the brokers it used) in `demo_runs`.
 */
export async function prepareService({ pipeline, config, run, topic }: { pipeline: DemoPipeline; config: OutboxConfig; run: string; topic: string }): Promise<UsersService> {
  const { pool } = pipeline;
  const s = ident(config.schema);
  await new UsersService({ pool, schema: config.schema }).init();
  if (pipeline.urls.asRoles) await pool.query(`GRANT SELECT, INSERT, UPDATE ON ${s}.${ident(SERVICE_TABLE)} TO ${ident(DEMO_ROLES.app)}`);
  const service = new UsersService({ pool: pipeline.appPool, schema: config.schema });
  await pool.query(`CREATE TABLE IF NOT EXISTS ${s}.demo_runs (run text PRIMARY KEY, brokers text NOT NULL, topic text NOT NULL, started_at timestamptz NOT NULL DEFAULT now())`);
  await pool.query(`INSERT INTO ${s}.demo_runs (run, brokers, topic) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [run, config.kafka.brokers.join(','), topic]);
  return service;
}

/** This run's five users (fresh ids and e-mail addresses per run). */
function demoUsers(run: string): DemoUser[] {
  return [
    ['ada', 'ada@example.com', 'Ada Lovelace'],
    ['grace', 'grace@example.com', 'Grace Hopper'],
    ['alan', 'alan@example.com', 'Alan Turing'],
    ['edsger', 'edsger@example.com', 'Edsger Dijkstra'],
    ['barbara', 'barbara@example.com', 'Barbara Liskov'],
  ].map(([key, email, name]) => ({ key: key!, id: `${key}-${run}`, email: email!.replace('@', `+${run}@`), name: name! }));
}

interface RequestOptions {
  /** What is printed (the HTTP request it stands for). */
  what: string;
  userId: string;
  actorId: string;
  ifMatch?: number;
}

/** Numbers the requests of the run (`req-<run>-NN`), records each answer and prints it. */
class Requests {
  readonly steps: WorkloadStep[] = [];
  private count = 0;

  constructor(
    private readonly run: string,
    private readonly say: Say,
  ) {}

  next(actorId: string): RequestMeta {
    return newRequest(actorId, `req-${this.run}-${String(++this.count).padStart(2, '0')}`);
  }

  async send({ what, userId, actorId, ifMatch }: RequestOptions, call: (request: RequestMeta) => Promise<ServiceResponse>): Promise<ServiceResponse> {
    const request = this.next(actorId);
    const response = await call(request);
    this.steps.push({ what, userId, request, ...(ifMatch !== undefined ? { ifMatch } : {}), response });
    const answer = response.status === 412 ? `412 Precondition Failed, ETag "${response.etag}" (current version)` : `${response.status}, ETag "${response.etag}"`;
    this.say(`  ${what.padEnd(56)} → ${answer}`);
    return response;
  }
}

export interface WorkloadOptions {
  service: UsersService;
  pipeline: DemoPipeline;
  config: OutboxConfig;
  run: string;
  /** How long the late transaction stays open. */
  holdMs: number;
  say: Say;
}

/** Drive the users service through the whole story; every request and answer is printed. */
export async function driveUsersService(o: WorkloadOptions): Promise<Workload> {
  const { service, run, say } = o;
  const users = demoUsers(run);
  const byKey = (k: string): DemoUser => users.find((u) => u.key === k)!;
  const requests = new Requests(run, say);

  say('');
  say('users service (each request: state row + event in one transaction; If-Match = expected version)');
  for (const u of users) {
    await requests.send({ what: `POST /users ${u.id} (${u.name})`, userId: u.id, actorId: 'service:signup' }, (r) => service.register(u.id, u.email, u.name, r));
  }
  const grace = byKey('grace');
  const conflict = await concurrentWrites({ service, requests, grace, run });
  const late = await lateTransaction({ ...o, requests, byKey });
  return { users, grace, steps: requests.steps, conflict, late };
}

/** Two clients read grace at version 1; the first write wins, the second gets 412 and retries. Returns the 412. */
async function concurrentWrites({ service, requests, grace, run }: { service: UsersService; requests: Requests; grace: DemoUser; run: string }): Promise<ServiceResponse> {
  await requests.send({ what: `PUT /users/${grace.id}/email  If-Match "1" (client A)`, userId: grace.id, actorId: `user:${grace.id}`, ifMatch: 1 }, (r) =>
    service.changeEmail(grace.id, `grace.hopper+${run}@navy.example`, 1, r),
  );
  const conflict = await requests.send({ what: `PUT /users/${grace.id}/email  If-Match "1" (client B)`, userId: grace.id, actorId: 'user:support-7', ifMatch: 1 }, (r) =>
    service.changeEmail(grace.id, `g.hopper+${run}@example.org`, 1, r),
  );
  if (conflict.status !== 412) throw new OutboxError('INTERNAL', 'demo: the stale If-Match was not refused');
  const retried = await requests.send(
    { what: `PUT /users/${grace.id}/email  If-Match "${conflict.etag}" (B retries)`, userId: grace.id, actorId: 'user:support-7', ifMatch: conflict.etag },
    (r) => service.changeEmail(grace.id, `g.hopper+${run}@example.org`, conflict.etag, r),
  );
  await requests.send({ what: `PUT /users/${grace.id}/name   If-Match "${retried.etag}"`, userId: grace.id, actorId: `user:${grace.id}`, ifMatch: retried.etag }, (r) =>
    service.rename(grace.id, 'Grace', 'Brewster Hopper', retried.etag, r),
  );
  return conflict;
}

/**
 * One transaction stays open (a slow request) while others commit and are published; it commits last
 * (with the lowest outbox id of them) and still arrives.
 */
async function lateTransaction(o: WorkloadOptions & { requests: Requests; byKey: (key: string) => DemoUser }): Promise<LateTransaction> {
  const { service, requests, byKey, run, holdMs, say } = o;
  const { pool } = o.pipeline;
  const s = ident(o.config.schema);
  const edsger = byKey('edsger');
  const lr = requests.next(`user:${edsger.id}`);
  say(`  late transaction: PUT /users/${edsger.id}/email appended, held open ${(holdMs / 1000).toFixed(1)}s while others commit…`);
  const meanwhile: Array<{ outboxId: string; userId: string }> = [];
  const lateStart = Date.now();
  const late = await service.inTransaction(async (client) => {
    const r = await service.changeEmail(edsger.id, `e.w.dijkstra+${run}@example.nl`, 1, lr, client);
    const gap = holdMs / 4;
    await sleep(gap);
    const ada = byKey('ada');
    const x1 = await requests.send({ what: `  PUT /users/${ada.id}/email  If-Match "1"`, userId: ada.id, actorId: `user:${ada.id}`, ifMatch: 1 }, (r1) =>
      service.changeEmail(ada.id, `ada.king+${run}@example.co.uk`, 1, r1),
    );
    await sleep(gap);
    const barbara = byKey('barbara');
    const x2 = await requests.send({ what: `  PUT /users/${barbara.id}/name  If-Match "1"`, userId: barbara.id, actorId: `user:${barbara.id}`, ifMatch: 1 }, (r2) =>
      service.rename(barbara.id, 'Barbara', 'Liskov', 1, r2),
    );
    await sleep(gap);
    const alan = byKey('alan');
    const x3 = await requests.send({ what: `  DELETE /users/${alan.id}  If-Match "1"`, userId: alan.id, actorId: 'user:support-7', ifMatch: 1 }, (r3) =>
      service.deactivate(alan.id, 'account closed at the user’s request', 1, r3),
    );
    for (const [x, u] of [
      [x1, ada],
      [x2, barbara],
      [x3, alan],
    ] as const) {
      if (x.status !== 412) meanwhile.push({ outboxId: x.outboxId, userId: u.id });
    }
    await sleep(Math.max(0, holdMs - (Date.now() - lateStart)));
    // Give the relay a moment to publish what committed meanwhile, so the order is visible below.
    await waitUntil('publishing the events committed meanwhile', 15_000, async () => {
      const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.outbox_delivery WHERE id = ANY($1::bigint[]) AND delivered_at IS NOT NULL`, [
        meanwhile.map((m) => m.outboxId),
      ]);
      return Number(rows[0]?.n ?? 0) === meanwhile.length;
    });
    return r;
  });
  if (late.status === 412) throw new OutboxError('INTERNAL', 'demo: the late transaction unexpectedly conflicted');
  requests.steps.push({ what: `PUT /users/${edsger.id}/email (late)`, userId: edsger.id, request: lr, ifMatch: 1, response: late });
  const heldMs = Date.now() - lateStart;
  say(
    `  late transaction committed after ${(heldMs / 1000).toFixed(1)}s: outbox id ${late.outboxId}, lower than the ids ${meanwhile.map((m) => m.outboxId).join(', ')} committed (and published) meanwhile`,
  );
  return {
    userId: edsger.id,
    outboxId: late.outboxId,
    eventId: late.eventId,
    heldMs,
    committedMeanwhile: meanwhile.map((m) => ({ ...m, deliveredBeforeLateCommit: true })),
  };
}
