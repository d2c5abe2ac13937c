import { createKafka } from '../../core/kafka';
import { silentLogger } from '../../core/logger';
import { builtInProjections, startProjector, type RunningProjector } from '../../projector';
import { startRelay, type RelayHandle } from '../../relay';
import { loadCatalog } from '../../schemas/catalog';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { relayConfig } from '../support/relay-env';
import { waitFor } from './support';

// The hash of an event covers its payload as the writer stored it. A payload that leaves out a field
// its schema gives a default would come out of Avro with the default filled in, and its hash would no
// longer match: the relay refuses to publish it (parked, with the field named) instead of letting the
// projector raise a false "chain broken" alert.
const db = useTestDatabase();
const logger = silentLogger();
let relay: RelayHandle | undefined;
let projector: RunningProjector | undefined;

afterAll(async () => {
  await projector?.stop();
  await relay?.stop();
});

async function insert(aggregateId: string, eventType: string, schemaVersion: number, payload: unknown): Promise<string> {
  const { rows } = await db.pool.query<{ event_id: string }>(
    `INSERT INTO outbox (aggregate_type, aggregate_id, event_type, schema_version, payload, actor_id, trace_id)
     VALUES ('user', $1, $2, $3, $4::jsonb, 'user:test', 'trace-defaults') RETURNING event_id::text`,
    [aggregateId, eventType, schemaVersion, JSON.stringify(payload)],
  );
  return rows[0]!.event_id;
}

test('a v2 payload stored without its defaulted field is parked naming the field; no chain-broken alert in the audit log', async () => {
  const topic = uniqueName('user_events');
  const config = relayConfig(db.url, topic, { LOG_LEVEL: 'silent' });
  const catalog = loadCatalog(undefined, { namespace: uniqueName('ns') });
  const parked: string[] = [];
  relay = startRelay({ config, logger, catalog, observer: { parked: (id, reason) => parked.push(`${id}: ${reason}`) } });

  await insert('ada', 'UserRegistered', 1, { email: 'ada@example.com', name: 'Ada Lovelace' });
  await insert('ada', 'UserEmailChanged', 2, { new_email: 'ada@new.example', verified: true });
  const omitted = await insert('ada', 'UserEmailChanged', 2, { new_email: 'ada@newer.example' });
  await insert('bob', 'UserRegistered', 1, { email: 'bob@example.com', name: 'Bob Babbage' });

  // Every row is either published or parked.
  await waitFor('the relay done with every row', async () => {
    const { rows } = await db.pool.query<{ pending: number }>('SELECT count(*)::int AS pending FROM outbox_delivery WHERE delivered_at IS NULL AND parked_at IS NULL');
    return rows[0]!.pending === 0;
  });
  const { rows: delivered } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox_delivery WHERE delivered_at IS NOT NULL');

  projector = await startProjector({
    config,
    logger,
    kafka: createKafka(config.kafka, logger),
    catalog,
    projections: ({ catalog: c, metrics }) => builtInProjections(config, { catalog: c, ...(metrics ? { metrics } : {}), topics: [topic] }).filter((p) => p.name === 'audit_log'),
    groupIdPrefix: uniqueName('g'),
    sessionTimeoutMs: 6000,
  });
  const o = `"${config.projector.schema}"`;
  await waitFor('the audit log has every published event', async () => (await db.pool.query(`SELECT 1 FROM ${o}.audit_log`)).rowCount === delivered[0]!.n);

  const { rows: statuses } = await db.pool.query<{ aggregate_id: string; aggregate_version: string; chain_status: string }>(
    `SELECT aggregate_id, aggregate_version::text, chain_status FROM ${o}.audit_log ORDER BY aggregate_id, aggregate_version`,
  );
  expect(statuses.filter((r) => r.chain_status !== 'ok')).toEqual([]);
  // The omitting event is parked, named and explained; the events of other aggregates flowed.
  const line = parked.find((l) => l.startsWith(omitted));
  expect(line).toBeDefined();
  expect(line).toMatch(/verified/);
  expect(line).toMatch(/default/);
  expect(statuses.map((r) => `${r.aggregate_id}/${r.aggregate_version}`)).toEqual(['ada/1', 'ada/2', 'bob/1']);
});
