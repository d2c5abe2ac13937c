import type { RegistrySettings } from '../../core/config';
import type { Logger } from '../../core/logger';
import { requireRegistry } from '../connections';
import type { Command, CommandGroup } from '../framework';
import { optionalExport } from '../optional';

/** schemas/ (engineer B) exports these; the CLI prints what they return. */
export interface SchemaCheckResult {
  ok: boolean;
  [key: string]: unknown;
}
type SchemaFn = (args: { registry: RegistrySettings; logger: Logger; dir?: string }) => Promise<SchemaCheckResult>;

function schemaCommand(name: 'check' | 'register', exportName: string, summary: string): Command {
  return {
    name: `schemas ${name}`,
    summary,
    flags: { dir: { type: 'string', placeholder: 'dir', description: 'Directory of the .avsc files (default: the packaged schemas/)' } },
    needs: { registry: true },
    async run({ config, logger, flags, json, out }) {
      await requireRegistry(config.registry);
      const fn = optionalExport<SchemaFn>('schemas/index', exportName, `outbox schemas ${name}`);
      const result = await fn({ registry: config.registry, logger, ...(typeof flags.dir === 'string' ? { dir: flags.dir } : {}) });
      if (json) out.json(result);
      else out.line(JSON.stringify(result, null, 2));
      if (!result.ok) {
        out.error(`outbox: schemas ${name} failed (see the output above)`);
        return 1;
      }
      return 0;
    },
  };
}

export const schemasGroup: CommandGroup = {
  name: 'schemas',
  summary: 'Check local Avro schemas against the registry, or register them',
  subcommands: [
    schemaCommand('check', 'checkSchemas', 'Check every local schema against the registry (compatibility, registration)'),
    schemaCommand('register', 'registerSchemas', 'Register every local schema version in the registry (idempotent)'),
  ],
};
