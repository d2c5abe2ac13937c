import pg from 'pg';
import { startRelay } from '../../relay';
import { adminUrl, withDatabase } from '../support/global-setup';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { writeWorkload } from '../support/workload';
import { inProcessProjector, kafkaOf, logger, percentile, scenarioConfig, scenarioEnv, seedUsers, sleep, verifyAndPrint, ZERO } from './support';

// Proof-suite scenario "a transaction left idle for 60 s in another database": pollers that use the
// xmin horizon (txid_snapshot) as a safe point stall while any transaction of the cluster is open. Our
// relay uses the delivery queue (outbox_delivery, FOR UPDATE SKIP LOCKED) and no horizon, so it must
// neither stall nor lose anything. Commit→ack latency and the longest gap between publications are
// measured while the foreign transaction (with an xid assigned) sits idle.
const db = useTestDatabase({ poolSize: 10 });
const IDLE_MS = 60_000;

test('a transaction idle for 60 s in another database: no stall, 0 lost, 0 reordered, 0 double-applied', async () => {
  const topic = uniqueName('idle');
  const env = scenarioEnv(db.url, topic);
  const other = `${db.name}_other`.slice(0, 63);
  const admin = new pg.Client({ connectionString: adminUrl(process.env.DATABASE_URL!) });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${other}"`);
  const aggregates = 100;
  await seedUsers(db.pool, aggregates);
  const publications: Array<{ at: number; latencies: number[] }> = [];
  const relay = startRelay({ config: scenarioConfig(env), logger, observer: { published: (_n, latencies) => publications.push({ at: Date.now(), latencies }) } });
  const projector = await inProcessProjector(env, uniqueName('g'));
  const idle = new pg.Client({ connectionString: withDatabase(process.env.DATABASE_URL!, other), application_name: 'fault-idle-tx' });
  try {
    await sleep(2000);
    await idle.connect();
    await idle.query('BEGIN');
    const { rows } = await idle.query<{ xid: string }>('SELECT txid_current()::text AS xid'); // an xid: holds back the cluster's xmin horizon
    const idleFrom = Date.now();
    const rate = 200;
    const written = await writeWorkload(db.pool, { writers: 2, total: (rate * (IDLE_MS - 5000)) / 1000, aggregates, perTx: 2, ratePerSec: rate });
    await sleep(Math.max(0, idleFrom + IDLE_MS - Date.now()));
    // On a busy machine the writes can overrun the window: keep the transaction open until what was
    // written has been published (bounded), so the last commits are not judged after it closed.
    const publishedSince = (): number => publications.filter((p) => p.at >= idleFrom).reduce((a, p) => a + p.latencies.length, 0);
    for (let i = 0; i < 300 && publishedSince() < written; i++) await sleep(100);
    const idleUntil = Date.now();
    const stillOpen = await db.pool.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'idle in transaction'`, [other]);
    await idle.query('ROLLBACK');

    const during = publications.filter((p) => p.at >= idleFrom && p.at <= idleUntil);
    const lat = during.flatMap((p) => p.latencies).sort((a, b) => a - b);
    let maxGap = 0;
    for (let i = 1; i < during.length; i++) maxGap = Math.max(maxGap, during[i]!.at - during[i - 1]!.at);
    const report = await verifyAndPrint(
      'idle-transaction-60s-other-db',
      db.pool,
      kafkaOf(env),
      [topic],
      { projections: true },
      {
        idle_seconds: Math.round((idleUntil - idleFrom) / 1000),
        idle_xid: rows[0]!.xid,
        events_during_idle: lat.length,
        latency_p50_ms: percentile(lat, 50),
        latency_p99_ms: percentile(lat, 99),
        latency_max_ms: lat[lat.length - 1] ?? null,
        max_gap_between_publications_ms: maxGap,
        stalled: maxGap > 10_000 || lat.length < written,
      },
    );
    expect(stillOpen.rows[0]!.n).toBe('1'); // the foreign transaction really was open all along
    expect(report).toMatchObject({ committed: written + aggregates, ...ZERO });
    expect(lat.length).toBeGreaterThanOrEqual(written); // everything written during the idle window was published during it
    expect(maxGap).toBeLessThan(10_000); // no stall
  } finally {
    await idle.end().catch(() => undefined);
    await projector.stop();
    await relay.stop();
    await admin.query(`DROP DATABASE IF EXISTS "${other}" WITH (FORCE)`);
    await admin.end();
  }
}, 240_000);
