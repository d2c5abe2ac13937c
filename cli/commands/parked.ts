import { listParked, retryParked, skipParked } from '../../relay/parked';
import { withClient, withPool } from '../connections';
import { formatTable, UsageError, type Command, type CommandGroup } from '../framework';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
    const rows = await withPool(config, logger, (pool) => listParked(pool, config.schema, limit));
    if (json) return out.json(rows);
    if (rows.length === 0) return out.line('no parked events');
    out.line(
      formatTable(
        ['EVENT_ID', 'AGGREGATE', 'VERSION', 'EVENT_TYPE', 'ATTEMPTS', 'PARKED_AT', 'HELD_BACK', 'REASON'],
        rows.map((r) => [
          r.event_id,
          `${r.aggregate_type}/${r.aggregate_id}`,
          r.aggregate_version,
          r.event_type,
          r.attempts,
          r.parked_at.toISOString(),
          r.held_back,
          r.park_reason,
        ]),
      ),
    );
  },
};

const retry: Command = {
  name: 'parked retry',
  summary: 'Un-park an event: the relay tries to publish it (and the events held behind it) again',
  positionals: [{ name: 'event_id', description: 'event_id of the parked event (see "outbox parked list")', required: true }],
  needs: { database: true },
  async run({ config, logger, positionals, json, out }) {
    const eventId = eventIdArg(positionals[0]);
    const row = await withClient(config, logger, (client) => retryParked(client, config.schema, eventId));
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
    const row = await withClient(config, logger, (client) => skipParked(client, config.schema, eventId, note));
    // An operator decision that changes what consumers see: always logged, whatever the log level.
    logger.warn(
      { eventId, aggregate: `${String(row.aggregate_type)}/${String(row.aggregate_id)}`, version: row.aggregate_version, reason: row.park_reason },
      'parked event skipped: marked delivered without publishing',
    );
    if (json) out.json({ action: 'skip', ...row });
    else out.line(`event ${eventId} (${String(row.aggregate_type)}/${String(row.aggregate_id)} v${String(row.aggregate_version)}) skipped: marked delivered without publishing`);
  },
};

export const parkedGroup: CommandGroup = {
  name: 'parked',
  summary: 'Inspect and resolve parked deliveries',
  subcommands: [list, retry, skip],
};
