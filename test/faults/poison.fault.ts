import { startRelay } from '../../relay';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { readTopics } from '../support/kafka';
import { writeWorkload } from '../support/workload';
import { inProcessProjector, kafkaOf, logger, scenarioConfig, scenarioEnv, seedUsers, sleep, verifyAndPrint, ZERO } from './support';

// Proof-suite scenario "poison inputs" under load: in the outbox, rows of 4 aggregates that cannot be
// encoded (an event type without a schema, a payload that does not fit its schema, followed by valid
// events held behind them); on the topic, raw messages that are not Avro (bad magic byte, truncated body)
// produced directly. Expected: only the poisoned aggregates are parked (their later events held back),
// every other committed event is delivered and applied exactly once, and the raw messages go to the
// dead-letter topic without disturbing the read models. test/relay/poison.test.ts covers retry/skip.
const db = useTestDatabase({ poolSize: 10 });

test('poison rows park only their aggregates; poison messages are dead-lettered; the rest: 0 lost, 0 reordered, 0 double-applied', async () => {
  const topic = uniqueName('poison');
  const env = scenarioEnv(db.url, topic);
  const aggregates = 100;
  await seedUsers(db.pool, aggregates);
  const parked: string[] = [];
  const relay = startRelay({ config: scenarioConfig(env), logger, observer: { parked: (id) => parked.push(id) } });
  const projector = await inProcessProjector(env, uniqueName('g'));
  const kafka = kafkaOf(env);
  const producer = kafka.producer();
  await producer.connect();
  try {
    const writing = writeWorkload(db.pool, { writers: 3, total: 6_000, aggregates, perTx: 3, ratePerSec: 400 });
    await sleep(2000);
    const poison = async (id: string, type: string, payload: object): Promise<void> => {
      await db.pool.query(
        `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id) VALUES ('user', $1, $2, 1, $3::jsonb, 'user:poison', 'trace-poison')`,
        [id, type, JSON.stringify(payload)],
      );
    };
    for (let k = 0; k < 4; k++) {
      const id = `poison${k}`;
      if (k % 2 === 0) await poison(id, 'UserNicknameSet', { nickname: 'no schema' });
      else await poison(id, 'UserRegistered', { email: null, name: 'Bad Payload' });
      await poison(id, 'UserRegistered', { email: `${id}@example.com`, name: 'Held Back' }); // held behind the poison
    }
    await producer.send({
      topic,
      messages: [
        { key: 'raw-1', value: Buffer.from('not avro at all') },
        { key: 'raw-2', value: Buffer.from([0, 0, 0, 0]) },
      ],
    });
    expect(await writing).toBe(6_000);
    const rawPoison = 2;
    const deadLettered = await (async () => {
      for (let i = 0; i < 100; i++) {
        const { rows } = await db.pool
          .query<{ n: number }>('SELECT count(DISTINCT (topic, partition, "offset"))::int AS n FROM projector_dead_letters')
          .catch(() => ({ rows: [{ n: 0 }] }));
        if (rows[0]!.n >= rawPoison) return rows[0]!.n;
        await sleep(200);
      }
      return 0;
    })();
    const report = await verifyAndPrint(
      'poison-inputs',
      db.pool,
      kafkaOf(env),
      [topic],
      { projections: true, where: "aggregate_id NOT LIKE 'poison%'" },
      {
        poison_rows: 4,
        held_back_rows: 4,
        parked_events: new Set(parked).size,
        raw_poison_messages: rawPoison,
        dead_lettered: deadLettered,
      },
    );
    // Every raw poison message was dead-lettered once, and nothing else was: in the projector's record
    // and on the dead-letter topic (a decode failure is shared by the projections of the topic).
    expect(deadLettered).toBe(rawPoison);
    const recorded = (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM projector_dead_letters')).rows[0]!.n;
    expect(recorded).toBe(rawPoison);
    const dlq = await readTopics(kafka, [`${topic}.dlq`], { timeoutMs: 30_000 });
    expect(dlq.map((m) => m.message.key?.toString()).sort()).toEqual(['raw-1', 'raw-2']);
    // The two raw messages are on the topic without an outbox event id: "unexpected" by design here.
    expect(report).toMatchObject({ committed: 6_000 + aggregates, ...ZERO, unexpected: 2 });
    expect(new Set(parked).size).toBe(4);
    const { rows } = await db.pool.query<{ delivered: string; parked: string; held: string }>(
      `SELECT count(*) FILTER (WHERE d.delivered_at IS NOT NULL)::text AS delivered, count(*) FILTER (WHERE d.parked_at IS NOT NULL)::text AS parked,
              count(*) FILTER (WHERE d.delivered_at IS NULL AND d.parked_at IS NULL)::text AS held
         FROM outbox o JOIN outbox_delivery d ON d.id = o.id WHERE o.aggregate_id LIKE 'poison%'`,
    );
    expect(rows[0]).toEqual({ delivered: '0', parked: '4', held: '4' });
  } finally {
    await producer.disconnect();
    await projector.stop();
    await relay.stop();
  }
}, 300_000);
