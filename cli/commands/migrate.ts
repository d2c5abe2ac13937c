import { identifierProblem, migrate } from '../../infra/migrate';
import { withClient } from '../connections';
import { UsageError, type Command } from '../framework';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'Create or update the outbox tables in PostgreSQL (idempotent, safe to run concurrently)',
  description:
    "Applies the pending SQL migrations of infra/migrations in order, each in its own transaction,\nin the schema OUTBOX_SCHEMA (default outbox); the projector's tables go to OUTBOX_PROJECTOR_SCHEMA\n(default <OUTBOX_SCHEMA>_read). Creates the roles that are missing (NOLOGIN; see docs/security.md).",
  flags: {
    'app-role': { type: 'string', placeholder: 'role', description: 'Least-privilege role the application connects as', default: 'outbox_app' },
    'owner-role': { type: 'string', placeholder: 'role', description: 'NOLOGIN role that owns the outbox tables and functions', default: 'outbox_owner' },
    'relay-role': { type: 'string', placeholder: 'role', description: 'Role the relay connects as (cannot change the history)', default: 'outbox_relay' },
    'projector-role': { type: 'string', placeholder: 'role', description: 'Role the projector connects as (owns its read model)', default: 'outbox_projector' },
  },
  needs: { database: true },
  async run({ config, logger, flags, json, out }) {
    const role = (flag: 'app-role' | 'owner-role' | 'relay-role' | 'projector-role'): string => {
      const name = String(flags[flag]);
      const problem = identifierProblem(name);
      if (problem) throw new UsageError(`--${flag} ${problem}`, 'migrate');
      return name;
    };
    const roles = { appRole: role('app-role'), ownerRole: role('owner-role'), relayRole: role('relay-role'), projectorRole: role('projector-role') };
    const applied = await withClient(config, logger, (client) =>
      migrate(client, { schema: config.schema, projectorSchema: config.projector.schema, ...roles, relayShards: config.relay.shards ?? 32, logger }),
    );
    if (json) out.json({ schema: config.schema, applied });
    else if (applied.length === 0) out.line(`schema "${config.schema}" is up to date`);
    else out.line(`applied ${applied.length} migration(s) to schema "${config.schema}":\n${applied.map((m) => `  ${m}`).join('\n')}`);
  },
};
