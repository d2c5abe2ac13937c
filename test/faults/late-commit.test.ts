import { startRelay } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { INSERT_EVENT } from '../support/relay-env';
import { writeWorkload } from '../support/workload';
import { inProcessProjector, kafkaOf, logger, naiveLost, naivePoller, scenarioConfig, scenarioEnv, seedUsers, sleep, verifyAndPrint, ZERO } from './support';

// Proof-suite scenario "late-committing transaction" (also in npm test): three transactions take the
// lowest ids and commit 4 s after 400 later events; one more rolls back. kafka-outbox (relay + projector)
// delivers and applies every committed event exactly once; the naive `WHERE id > last` poller, run on
// the same database at the same time as the control, loses the late ones. (test/relay/late-commit.test.ts
// proves the single-transaction case against the topic alone.)
const db = useTestDatabase({ poolSize: 12 });

test('late commits: kafka-outbox 0 lost / 0 reordered / 0 double-applied; the naive poller loses them', async () => {
  const topic = uniqueName('late');
  const env = scenarioEnv(db.url, topic);
  await seedUsers(db.pool, 50);
  const relay = startRelay({ config: scenarioConfig(env), logger });
  const projector = await inProcessProjector(env, uniqueName('g'));
  const naive = naivePoller(db.pool);
  try {
    await sleep(1000); // the naive poller has passed the seed rows
    const late = [];
    for (let k = 0; k < 3; k++) {
      const c = await db.pool.connect();
      await c.query('BEGIN');
      await c.query(
        `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
         VALUES ('user', $1, 'UserRegistered', 1, jsonb_build_object('email', $1 || '@example.com', 'name', 'Late Comer'), 'user:late', 'trace-late')`,
        [`late${k}`],
      );
      late.push(c);
    }
    const rb = await db.pool.connect();
    await rb.query('BEGIN');
    await rb.query(INSERT_EVENT, ['rolled-back', 'never@example.com', 'rollback']);

    await writeWorkload(db.pool, { writers: 4, total: 400, aggregates: 50, perTx: 2 });
    await sleep(4000);
    await rb.query('ROLLBACK');
    rb.release();
    for (const c of late) {
      await c.query('COMMIT');
      c.release();
    }
    const report = await verifyAndPrint(
      'late-commit',
      db.pool,
      kafkaOf(env),
      [topic],
      { projections: true },
      {
        late_transactions: 3,
        rolled_back: 1,
        naive_poller_lost: await sleep(500).then(() => naiveLost(db.pool, naive.seen)),
      },
    );
    expect(report).toMatchObject({ committed: 453, ...ZERO });
    // The control must lose the late commits (proof that the scenario can see a loss); with 4 concurrent
    // writers it may lose a few ordinary events too.
    const { rows } = await db.pool.query<{ event_id: string }>("SELECT event_id::text FROM outbox WHERE aggregate_id LIKE 'late%'");
    expect(rows.filter((r) => naive.seen.has(r.event_id))).toEqual([]);
    expect(await naiveLost(db.pool, naive.seen)).toBeGreaterThanOrEqual(3);
  } finally {
    await naive.stop();
    await projector.stop();
    await relay.stop();
  }
});
