import pg from 'pg';
import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { builtInProjections, startProjector, type RunningProjector } from '../../projector';
import { startRelay } from '../../relay';
import { loadCatalog } from '../../schemas/catalog';
import { verifyChain } from '../../writer';
import { waitFor } from '../projector/support';
import { checkDelivery } from '../support/delivery-check';
import { uniqueName, useTestDatabase } from '../support/isolation';
import { INSERT_EVENT, relayConfig } from '../support/relay-env';
import { useScratch } from './scratch';

// The relay and the projector do their whole job logged in as members of the roles the migrations
// create for them (outbox_relay, outbox_projector), not as the tables' owner, while the events are
// written as the application role.
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
let projector: RunningProjector | undefined;
let projectorPool: pg.Pool | undefined;
const logins: string[] = [];

// Declared before useTestDatabase() and useScratch(): afterAll hooks run in declaration order, and the
// projector must stop before its database and roles are dropped.
afterAll(async () => {
  await projector?.stop();
  await projectorPool?.end();
  // The projector's login owns the schemas and views it created: hand them over so the role can be dropped.
  for (const login of logins) await db.pool?.query(`REASSIGN OWNED BY "${login}" TO CURRENT_USER`).catch(() => undefined);
});
const db = useTestDatabase();
const scratch = useScratch();

function as(url: string, user: string): string {
  const u = new URL(url);
  u.username = user;
  return u.toString();
}

test('a relay logged in as outbox_relay publishes every event and a projector logged in as outbox_projector projects them all; the chain still verifies', async () => {
  const relayLogin = scratch.role('ko_relay_login');
  const projectorLogin = scratch.role('ko_prj_login');
  logins.push(relayLogin, projectorLogin);
  await db.pool.query(`CREATE ROLE "${relayLogin}" LOGIN IN ROLE outbox_relay`);
  await db.pool.query(`CREATE ROLE "${projectorLogin}" LOGIN IN ROLE outbox_projector`);
  // Database privileges are not copied from the template this database was cloned from.
  await db.pool.query(`GRANT CREATE ON DATABASE "${db.name}" TO outbox_projector`);

  const users = 5;
  const changes = 5;
  const n = users * (1 + changes);
  const c = await db.pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SET LOCAL ROLE outbox_app');
    for (let u = 0; u < users; u++) {
      await c.query(
        `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
         VALUES ('user', $1, 'UserRegistered', 1, jsonb_build_object('email', $1 || '@example.com', 'name', 'Name ' || $1), 'user:test', '4bf92f3577b34da6a3ce929d0e0e4736')`,
        [`u${u}`],
      );
      for (let i = 0; i < changes; i++) await c.query(INSERT_EVENT, [`u${u}`, `u${u}.${i}@example.com`, `corr-${u}-${i}`]);
    }
    await c.query('COMMIT');
  } finally {
    c.release();
  }

  const topic = uniqueName('roles');
  const relayCfg = relayConfig(as(db.url, relayLogin), topic);
  const relay = startRelay({ config: relayCfg, logger });
  try {
    const report = await checkDelivery(db.pool, createKafka(relayCfg.kafka, logger), [topic], { timeoutMs: 60_000 });
    expect(report).toMatchObject({ committed: n, lost: 0, reordered: 0, unexpected: 0 });
    const { rows } = await db.pool.query<{ pending: number }>('SELECT count(*)::int AS pending FROM outbox.outbox_delivery WHERE delivered_at IS NULL');
    expect(rows).toEqual([{ pending: 0 }]);
  } finally {
    await relay.stop();
  }

  const projectorUrl = as(db.url, projectorLogin);
  const projectorCfg = relayConfig(projectorUrl, topic);
  projectorPool = new pg.Pool({ connectionString: projectorUrl, max: 4 });
  const catalog = loadCatalog();
  projector = await startProjector({
    config: projectorCfg,
    logger,
    pool: projectorPool,
    catalog,
    projections: ({ catalog: cat }) => builtInProjections(projectorCfg, { catalog: cat, topics: [topic] }),
    groupIdPrefix: uniqueName('g'),
    sessionTimeoutMs: 6000,
  });
  await waitFor('all events projected', async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox_read.audit_log')).rows[0]!.n === n);
  await waitFor(
    'all users projected',
    async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox_read.users WHERE version = $1', [1 + changes])).rows[0]!.n === users,
  );
  const dead = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox_read.projector_dead_letters');
  expect(dead.rows).toEqual([{ n: 0 }]);
  const emails = await db.pool.query<{ email: string }>('SELECT email FROM outbox_read.users ORDER BY user_id');
  expect(emails.rows.map((r) => r.email)).toEqual(Array.from({ length: users }, (_, u) => `u${u}.${changes - 1}@example.com`));
  const v = await db.pool.connect();
  try {
    expect(await verifyChain(v, { schema: 'outbox' })).toMatchObject({ ok: true, checked: n });
  } finally {
    v.release();
  }
});
