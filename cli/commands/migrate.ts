import { migrate } from '../../infra/migrate';
import { withClient } from '../connections';
import type { Command } from '../framework';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'Create or update the outbox tables in PostgreSQL (idempotent, safe to run concurrently)',
  description: 'Applies the pending SQL migrations of infra/migrations in order, each in its own transaction,\nin the schema OUTBOX_SCHEMA (default public).',
  flags: {
    'app-role': { type: 'string', placeholder: 'role', description: 'Least-privilege role the application connects as', default: 'outbox_app' },
  },
  needs: { database: true },
  async run({ config, logger, flags, json, out }) {
    const appRole = String(flags['app-role']);
    const applied = await withClient(config, logger, (client) => migrate(client, { schema: config.schema, appRole, logger }));
    if (json) out.json({ schema: config.schema, applied });
    else if (applied.length === 0) out.line(`schema "${config.schema}" is up to date`);
    else out.line(`applied ${applied.length} migration(s) to schema "${config.schema}":\n${applied.map((m) => `  ${m}`).join('\n')}`);
  },
};
