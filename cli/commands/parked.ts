import type pg from 'pg';
import { OutboxError } from '../../core/errors';
import { ident } from '../../core/pg';
import { withClient, withPool } from '../connections';
import { formatTable, UsageError, type Command, type CommandGroup } from '../framework';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface ParkedRow {
  event_id: string;
  event_type: string;
  aggregate_type: string;
  aggregate_id: string;
  aggregate_version: string;
  attempts: number;
  parked_at: Date;
  park_reason: string | null;
  /** Later undelivered events of the same aggregate, held back behind this one. */
  held_back: string;
}

function eventIdArg(value: string | undefined): string {
  if (value === undefined) throw new UsageError('missing argument <event_id> (the event_id of a parked event, see "outbox parked list")');
  if (!UUID.test(value)) throw new UsageError(`<event_id> must be a UUID, got "${value}"`);
  return value.toLowerCase();
}

const list: Command = {
  name: 'parked list',
  summary: 'List parked events (delivery stopped for their aggregate until retried or skipped)',
  flags: {
    limit: { type: 'string', placeholder: 'n', description: 'Show at most n events', default: '100' },
  },
  needs: { database: true },
  async run({ config, logger, flags, json, out }) {
    const limit = Number(flags.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit must be a positive whole number, got "${String(flags.limit)}"`);
    const s = ident(config.schema);
    const rows = await withPool(config, logger, async (pool) => {
      const res = await pool.query<ParkedRow>(
        `SELECT o.event_id::text, o.event_type, d.aggregate_type, d.aggregate_id, d.aggregate_version::text, d.attempts, d.parked_at, d.park_reason,
                (SELECT count(*) FROM ${s}.outbox_delivery h
                  WHERE h.aggregate_type = d.aggregate_type AND h.aggregate_id = d.aggregate_id
                    AND h.delivered_at IS NULL AND h.id > d.id)::text AS held_back
           FROM ${s}.outbox_delivery d JOIN ${s}.outbox o ON o.id = d.id
          WHERE d.parked_at IS NOT NULL AND d.delivered_at IS NULL
          ORDER BY d.parked_at, d.id
          LIMIT $1`,
        [limit],
      );
      return res.rows;
    });
    if (json) return out.json(rows);
    if (rows.length === 0) return out.line('no parked events');
    out.line(
      formatTable(
        ['EVENT_ID', 'AGGREGATE', 'VERSION', 'EVENT_TYPE', 'ATTEMPTS', 'PARKED_AT', 'HELD_BACK', 'REASON'],
        rows.map((r) => [r.event_id, `${r.aggregate_type}/${r.aggregate_id}`, r.aggregate_version, r.event_type, r.attempts, r.parked_at.toISOString(), r.held_back, r.park_reason]),
      ),
    );
  },
};

/** Updates the parked delivery row of `eventId` in a short transaction; NOT_FOUND names why it cannot. */
async function updateParked(client: pg.Client, schema: string, eventId: string, set: string, params: unknown[]): Promise<Record<string, unknown>> {
  const s = ident(schema);
  await client.query('BEGIN');
  try {
    await client.query(`SET LOCAL lock_timeout = '5s'`);
    const res = await client.query(
      `UPDATE ${s}.outbox_delivery d SET ${set}
         FROM ${s}.outbox o
        WHERE o.id = d.id AND o.event_id = $1::uuid AND d.parked_at IS NOT NULL AND d.delivered_at IS NULL
        RETURNING o.event_id::text, o.event_type, d.aggregate_type, d.aggregate_id, d.aggregate_version::text, d.park_reason, d.delivered_at`,
      [eventId, ...params],
    );
    if (res.rowCount === 0) {
      const why = await client.query<{ delivered_at: Date | null; parked_at: Date | null }>(
        `SELECT d.delivered_at, d.parked_at FROM ${s}.outbox o LEFT JOIN ${s}.outbox_delivery d ON d.id = o.id WHERE o.event_id = $1::uuid`,
        [eventId],
      );
      await client.query('ROLLBACK');
      const r = why.rows[0];
      const reason = !r ? 'no such event' : r.delivered_at ? 'it is already delivered' : 'it is not parked';
      throw new OutboxError('NOT_FOUND', `event ${eventId} is not a parked event: ${reason}`, { details: { eventId } });
    }
    await client.query('COMMIT');
    return res.rows[0] as Record<string, unknown>;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const retry: Command = {
  name: 'parked retry',
  summary: 'Un-park an event: the relay tries to publish it (and the events held behind it) again',
  positionals: [{ name: 'event_id', description: 'event_id of the parked event (see "outbox parked list")', required: true }],
  needs: { database: true },
  async run({ config, logger, positionals, json, out }) {
    const eventId = eventIdArg(positionals[0]);
    const row = await withClient(config, logger, (client) => updateParked(client, config.schema, eventId, 'parked_at = NULL, park_reason = NULL', []));
    logger.info({ eventId, aggregate: `${String(row.aggregate_type)}/${String(row.aggregate_id)}` }, 'parked event released for retry');
    if (json) out.json({ action: 'retry', ...row });
    else out.line(`event ${eventId} (${String(row.aggregate_type)}/${String(row.aggregate_id)} v${String(row.aggregate_version)}) released: the relay will try it again`);
  },
};

const skip: Command = {
  name: 'parked skip',
  summary: 'Mark a parked event delivered WITHOUT publishing it (it stays in the history); later events flow again',
  positionals: [{ name: 'event_id', description: 'event_id of the parked event (see "outbox parked list")', required: true }],
  flags: {
    reason: { type: 'string', placeholder: 'text', description: 'Why it is skipped (kept in park_reason)' },
  },
  needs: { database: true },
  async run({ config, logger, positionals, flags, json, out }) {
    const eventId = eventIdArg(positionals[0]);
    const note = typeof flags.reason === 'string' ? flags.reason : null;
    const row = await withClient(config, logger, (client) =>
      updateParked(
        client,
        config.schema,
        eventId,
        `delivered_at = now(), topic = NULL, kafka_partition = NULL, kafka_offset = NULL,
         park_reason = 'skipped: ' || COALESCE(d.park_reason, '') || COALESCE(' (' || $2::text || ')', '')`,
        [note],
      ),
    );
    // An operator decision that changes what consumers see: always logged, whatever the log level.
    logger.warn({ eventId, aggregate: `${String(row.aggregate_type)}/${String(row.aggregate_id)}`, version: row.aggregate_version, reason: row.park_reason }, 'parked event skipped: marked delivered without publishing');
    if (json) out.json({ action: 'skip', ...row });
    else out.line(`event ${eventId} (${String(row.aggregate_type)}/${String(row.aggregate_id)} v${String(row.aggregate_version)}) skipped: marked delivered without publishing`);
  },
};

export const parkedGroup: CommandGroup = {
  name: 'parked',
  summary: 'Inspect and resolve parked deliveries',
  subcommands: [list, retry, skip],
};
