import type pg from 'pg';
import { OutboxError } from '../../core/errors';
import { ident } from '../../core/pg';
import { withClient, withPool } from '../connections';
import { formatCsv, parseAggregateRef, parseTime, type Command, type CommandGroup } from '../framework';
import { stateHistory } from '../state';

export interface HistoryEvent {
  event_id: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: number;
  event_type: string;
  schema_version: number;
  occurred_at: Date;
  recorded_at: Date;
  actor_id: string;
  trace_id: string;
  correlation_id: string | null;
  causation_id: string | null;
  payload: Record<string, unknown>;
  hash: string;
  prev_hash: string;
  state_before?: Record<string, unknown> | null;
  state_after?: Record<string, unknown> | null;
}

export async function readHistory(pool: pg.Pool, schema: string, type: string, id: string, at?: Date): Promise<HistoryEvent[]> {
  const s = ident(schema);
  const { rows } = await pool.query<HistoryEvent & { aggregate_version: string }>(
    `SELECT event_id::text, aggregate_type, aggregate_id, aggregate_version::text, event_type, schema_version,
            occurred_at, recorded_at, actor_id, trace_id, correlation_id, causation_id, payload,
            encode(hash, 'hex') AS hash, encode(prev_hash, 'hex') AS prev_hash
       FROM ${s}.outbox
      WHERE aggregate_type = $1 AND aggregate_id = $2 AND ($3::timestamptz IS NULL OR occurred_at <= $3::timestamptz)
      ORDER BY aggregate_version`,
    [type, id, at ?? null],
  );
  return rows.map((r) => ({ ...r, aggregate_version: Number(r.aggregate_version) }));
}

const history: Command = {
  name: 'audit history',
  summary: 'Who changed an aggregate, when, from which request: every event with actor, trace and correlation ids',
  description:
    'Reads the permanent history in the outbox table. With --at, only events that occurred at or before that\ntime (and the state as of then). State before/after is shown where the projector can fold the aggregate.',
  positionals: [{ name: 'aggregate', description: '<aggregate_type>/<id>, e.g. user/42', required: true }],
  flags: {
    at: { type: 'string', placeholder: 'time', description: 'History as of this time (ISO 8601, e.g. 2025-01-31T12:00:00Z)' },
    format: { type: 'string', placeholder: 'format', description: 'Output format', choices: ['table', 'json', 'csv'], default: 'table' },
  },
  needs: { database: true },
  async run({ config, logger, flags, positionals, json, out }) {
    const ref = parseAggregateRef(positionals[0]!, '<aggregate>');
    const at = typeof flags.at === 'string' ? parseTime('at', flags.at) : undefined;
    const format = json ? 'json' : String(flags.format);
    const events = await withPool(config, logger, async (pool) => {
      const evs = await readHistory(pool, config.schema, ref.type, ref.id, at);
      const states = stateHistory({ logger, aggregateType: ref.type, events: evs });
      if (states) evs.forEach((e, i) => Object.assign(e, states[i]));
      return evs;
    });
    if (events.length === 0) {
      throw new OutboxError('NOT_FOUND', `no events for ${ref.type}/${ref.id}${at ? ` at or before ${at.toISOString()}` : ''} in schema "${config.schema}"`);
    }
    if (format === 'json') return out.json({ aggregate: `${ref.type}/${ref.id}`, at: at?.toISOString() ?? null, events });
    const headers = ['VERSION', 'OCCURRED_AT', 'EVENT', 'ACTOR', 'TRACE_ID', 'CORRELATION_ID', 'CAUSATION_ID', 'EVENT_ID', 'PAYLOAD', 'STATE_BEFORE', 'STATE_AFTER'];
    const rows = events.map((e) => [
      e.aggregate_version,
      e.occurred_at.toISOString(),
      `${e.event_type} v${e.schema_version}`,
      e.actor_id,
      e.trace_id,
      e.correlation_id,
      e.causation_id,
      e.event_id,
      JSON.stringify(e.payload),
      e.state_before === undefined ? null : JSON.stringify(e.state_before),
      e.state_after === undefined ? null : JSON.stringify(e.state_after),
    ]);
    if (format === 'csv') return out.line(formatCsv(headers, rows));
    out.line(`${ref.type}/${ref.id}: ${events.length} event(s)${at ? ` as of ${at.toISOString()}` : ''}`);
    for (const e of events) {
      out.line('');
      out.line(`v${e.aggregate_version}  ${e.occurred_at.toISOString()}  ${e.event_type} (schema v${e.schema_version})`);
      out.line(`  actor        ${e.actor_id}`);
      out.line(`  trace        ${e.trace_id}`);
      out.line(`  correlation  ${e.correlation_id ?? '-'}`);
      out.line(`  causation    ${e.causation_id ?? '-'}`);
      out.line(`  event_id     ${e.event_id}`);
      out.line(`  payload      ${JSON.stringify(e.payload)}`);
      if (e.state_before !== undefined) out.line(`  before       ${JSON.stringify(e.state_before)}`);
      if (e.state_after !== undefined) out.line(`  after        ${JSON.stringify(e.state_after)}`);
      out.line(`  hash         ${e.hash.slice(0, 16)}… (prev ${e.prev_hash.slice(0, 16)}…)`);
    }
  },
};

const verify: Command = {
  name: 'audit verify',
  summary: 'Verify the hash chains of all aggregates (or one): names the first broken link and reports events/s',
  flags: {
    aggregate: { type: 'string', placeholder: 'type/id', description: 'Verify only this aggregate, e.g. user/42' },
  },
  needs: { database: true },
  async run({ config, logger, flags, json, out }) {
    const aggregate = typeof flags.aggregate === 'string' ? parseAggregateRef(flags.aggregate, '--aggregate') : undefined;
    const { verifyChain } = (require('../../writer/index') as typeof import('../../writer/index'));
    const result = await withClient(config, logger, (client) => verifyChain(client, { schema: config.schema, ...(aggregate ? { aggregate } : {}) }));
    if (json) out.json(result);
    else if (result.ok) out.line(`chain verified: ${result.checked} event(s)${aggregate ? ` of ${aggregate.type}/${aggregate.id}` : ''}, ${Math.round(result.eventsPerSecond)} events/s`);
    else out.line(`chain BROKEN: ${result.checked} event(s) checked, ${Math.round(result.eventsPerSecond)} events/s`);
    if (!result.ok) {
      const b = result.firstBroken;
      const where = b ? `${b.aggregateType}/${b.aggregateId} v${b.version}${b.eventId ? ` (event ${b.eventId})` : ''}: ${b.reason}` : 'unknown link';
      out.error(`outbox: hash chain broken at ${where}`);
      return 1;
    }
    return 0;
  },
};

export const auditGroup: CommandGroup = {
  name: 'audit',
  summary: 'Audit the event history: who changed what, and whether the hash chains verify',
  subcommands: [history, verify],
};
