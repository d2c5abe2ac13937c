import type pg from 'pg';
import type { OutboxConfig } from '../../../core/config';
import { OutboxError } from '../../../core/errors';
import { createKafka } from '../../../core/kafka';
import type { Logger } from '../../../core/logger';
import { ident } from '../../../core/pg';
import { sleep } from '../../../core/retry';

/**
 * Reading the run back: wait until every event is published and projected, read the topic back, and
 * collect what the report shows (the `users` read model, one user's audit history, the hash chains).
 */

/** Poll `check` until it holds; a timeout fails the demo (publishing: Kafka is the usual suspect). */
export async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new OutboxError(
        /publish/.test(what) ? 'KAFKA_UNAVAILABLE' : 'INTERNAL',
        `demo: ${what} did not happen within ${Math.round(timeoutMs / 1000)}s (run with --verbose to see the relay and projector logs)`,
      );
    await sleep(200);
  }
}

export interface RunCounts {
  written: { written: number; delivered: number };
  projected: { auditLog: number; users: number; usersCurrent: number };
}

/** Wait until every event of the run's users is published, then projected (audit_log and an up-to-date `users` row each). */
export async function waitForRun({ pool, config, ids }: { pool: pg.Pool; config: OutboxConfig; ids: string[] }): Promise<RunCounts> {
  const s = ident(config.schema);
  const r = ident(config.projector.schema);
  const countWritten = async (): Promise<RunCounts['written']> => {
    const { rows } = await pool.query<{ written: string; delivered: string }>(
      `SELECT count(*) AS written, count(d.delivered_at) AS delivered
         FROM ${s}.outbox o LEFT JOIN ${s}.outbox_delivery d ON d.id = o.id
        WHERE o.aggregate_type = 'user' AND o.aggregate_id = ANY($1::text[])`,
      [ids],
    );
    return { written: Number(rows[0]?.written ?? 0), delivered: Number(rows[0]?.delivered ?? 0) };
  };
  const countProjected = async (): Promise<RunCounts['projected']> => {
    const { rows } = await pool.query<{ audit: string; users: string; current: string }>(
      `SELECT (SELECT count(*) FROM ${r}.audit_log WHERE aggregate_type = 'user' AND aggregate_id = ANY($1::text[])) AS audit,
              (SELECT count(*) FROM ${r}.users WHERE user_id = ANY($1::text[])) AS users,
              (SELECT count(*) FROM ${r}.users u JOIN ${s}.outbox_aggregates h ON h.aggregate_type = 'user' AND h.aggregate_id = u.user_id
                WHERE u.user_id = ANY($1::text[]) AND u.version = h.version) AS current`,
      [ids],
    );
    return { auditLog: Number(rows[0]?.audit ?? 0), users: Number(rows[0]?.users ?? 0), usersCurrent: Number(rows[0]?.current ?? 0) };
  };
  let written = await countWritten();
  await waitUntil('publishing every event of the run', 60_000, async () => {
    written = await countWritten();
    return written.delivered === written.written;
  });
  let projected = await countProjected();
  await waitUntil('projecting every event of the run', 60_000, async () => {
    projected = await countProjected();
    return projected.auditLog === written.written && projected.usersCurrent === ids.length;
  });
  return { written, projected };
}

export interface ReadBackOptions {
  config: OutboxConfig;
  logger: Logger;
  topic: string;
  pool: pg.Pool;
  ids: string[];
  run: string;
}

/** Read the topic from the beginning with a throw-away consumer group; count this run's events (decoded with the registry's schemas). */
export async function readBackFromTopic({ config, logger, topic, pool, ids, run }: ReadBackOptions): Promise<{ count: number; eventIds: Set<string> }> {
  const { createEventDecoder } = require('../../../schemas/decode-event') as typeof import('../../../schemas/decode-event');
  const { loadCatalog } = require('../../../schemas/catalog') as typeof import('../../../schemas/catalog');
  const s = ident(config.schema);
  const { rows } = await pool.query<{ event_id: string }>(`SELECT event_id::text FROM ${s}.outbox WHERE aggregate_type = 'user' AND aggregate_id = ANY($1::text[])`, [ids]);
  const expected = new Set(rows.map((r) => r.event_id));
  const decoder = createEventDecoder({ registry: config.registry, catalog: loadCatalog(), logger });
  const kafka = createKafka(config.kafka, logger, 'readback');
  const groupId = `${config.kafka.clientId}.readback.${run}`;
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1000 });
  const seen = new Set<string>();
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        if (!message.value) return;
        const r = await decoder.decode(message.value);
        if (r.ok && expected.has(r.event.eventId)) seen.add(r.event.eventId);
        if (seen.size === expected.size) done();
      },
    });
    await Promise.race([finished, sleep(30_000)]);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    const admin = kafka.admin();
    await admin
      .connect()
      .then(() => admin.deleteGroups([groupId]))
      .catch(() => undefined)
      .finally(() => admin.disconnect().catch(() => undefined));
  }
  return { count: seen.size, eventIds: seen };
}

export interface UserRow {
  user_id: string;
  email: string;
  email_verified: boolean;
  display_name: string;
  active: boolean;
  deactivation_reason: string | null;
  version: string;
  events_applied: number;
}

export interface AuditRow {
  aggregate_version: string;
  occurred_at: Date;
  event_type: string;
  schema_version: number;
  writer_schema_version: number;
  actor_id: string | null;
  trace_id: string | null;
  correlation_id: string | null;
  event_id: string;
  chain_status: string;
  chain_problem: string | null;
  hash: string;
  topic: string;
  kafka_partition: number;
  kafka_offset: string;
}

type ChainResult = Awaited<ReturnType<typeof import('../../../writer/index').verifyChain>>;

export interface RunResults {
  userRows: UserRow[];
  /** The featured user's audit history. */
  audit: AuditRow[];
  chains: { featured: ChainResult; allOk: boolean; allChecked: number; firstBroken: ChainResult['firstBroken'] };
  /** audit_log's chain status on arrival, over the run's users. */
  onArrival: Record<string, number>;
  chainVerified: boolean;
  /** Where the late event was projected from (topic, partition, offset), if it was. */
  lateAt: { topic: string; kafka_partition: number; kafka_offset: string } | undefined;
  lateReadBack: boolean;
  countsMatch: boolean;
}

export interface ReadResultsOptions {
  pool: pg.Pool;
  config: OutboxConfig;
  ids: string[];
  /** The user whose audit history is shown. */
  featuredId: string;
  lateEventId: string;
  counts: RunCounts;
  readBack: { count: number; eventIds: Set<string> };
}

/** What the report shows and the checks that decide the exit code: counts match, chains verified, the late event published and projected. */
export async function readResults({ pool, config, ids, featuredId, lateEventId, counts, readBack }: ReadResultsOptions): Promise<RunResults> {
  const { verifyChain } = require('../../../writer/index') as typeof import('../../../writer/index');
  const r = ident(config.projector.schema);
  const { rows: userRows } = await pool.query<UserRow>(
    `SELECT user_id, email, email_verified, display_name, active, deactivation_reason, version::text, events_applied FROM ${r}.users WHERE user_id = ANY($1::text[]) ORDER BY registered_at, user_id`,
    [ids],
  );
  const { rows: audit } = await pool.query<AuditRow>(
    `SELECT aggregate_version::text, occurred_at, event_type, schema_version, writer_schema_version, actor_id, trace_id, correlation_id, event_id,
            chain_status, chain_problem, encode(hash, 'hex') AS hash, topic, kafka_partition, kafka_offset::text
       FROM ${r}.audit_log WHERE aggregate_type = 'user' AND aggregate_id = $1 ORDER BY aggregate_version`,
    [featuredId],
  );
  const chains = await (async () => {
    const client = await pool.connect();
    try {
      const featured = await verifyChain(client, { schema: config.schema, aggregate: { type: 'user', id: featuredId } });
      const all = [];
      for (const id of ids) all.push(await verifyChain(client, { schema: config.schema, aggregate: { type: 'user', id } }));
      return { featured, allOk: all.every((r) => r.ok), allChecked: all.reduce((n, r) => n + r.checked, 0), firstBroken: all.find((r) => !r.ok)?.firstBroken };
    } finally {
      client.release();
    }
  })();
  const { rows: arrival } = await pool.query<{ chain_status: string; n: string }>(
    `SELECT chain_status, count(*) AS n FROM ${r}.audit_log WHERE aggregate_type = 'user' AND aggregate_id = ANY($1::text[]) GROUP BY chain_status`,
    [ids],
  );
  const onArrival = { ok: 0, broken: 0, unverified: 0 } as Record<string, number>;
  for (const r of arrival) onArrival[r.chain_status] = Number(r.n);
  const featuredArrivalOk = audit.length > 0 && audit.every((r) => r.chain_status === 'ok');
  const chainVerified = chains.featured.ok && chains.allOk && featuredArrivalOk && onArrival.broken === 0 && onArrival.unverified === 0 && chains.featured.checked === audit.length;
  const lateAudit = await pool.query<{ topic: string; kafka_partition: number; kafka_offset: string }>(
    `SELECT topic, kafka_partition, kafka_offset::text FROM ${r}.audit_log WHERE event_id = $1`,
    [lateEventId],
  );
  const { written, projected } = counts;
  return {
    userRows,
    audit,
    chains,
    onArrival,
    chainVerified,
    lateAt: lateAudit.rows[0],
    lateReadBack: readBack.eventIds.has(lateEventId),
    countsMatch: written.written === written.delivered && written.written === readBack.count && written.written === projected.auditLog,
  };
}
