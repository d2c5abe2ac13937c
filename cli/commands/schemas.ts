import { requireRegistry } from '../connections';
import type { Command, CommandGroup } from '../framework';
import { load } from '../lazy';

const dirFlag = { dir: { type: 'string' as const, placeholder: 'dir', description: 'Same as --schemas: directory of the .avsc files' } };

const check: Command = {
  name: 'schemas check',
  summary: 'Check every local schema version against the previous ones and the registry (read-only)',
  description: "Exit code 1 when a change is incompatible under the subject's compatibility level (default BACKWARD).",
  flags: dirFlag,
  needs: { registry: true },
  async run({ config, logger, json, out, domain: loadDomain }) {
    const domain = await loadDomain();
    const catalog = domain.catalog();
    await requireRegistry(config.registry);
    const { checkSchemas, formatCheckReport } = load('schemas');
    const report = await checkSchemas({ registry: config.registry, logger, catalog, upcasters: domain.upcasters });
    if (json) out.json(report);
    else out.line(formatCheckReport(report));
    if (!report.ok) {
      const p = report.problems[0];
      const first = p ? `: ${p.subject} v${p.version}${p.field ? ` field ${p.field}` : ''}: ${p.message}` : '';
      out.error(`outbox: schemas check found ${report.problems.length} incompatible change(s)${first}`);
      return 1;
    }
    return 0;
  },
};

const register: Command = {
  name: 'schemas register',
  summary: 'Register every local schema version in the registry, in order (idempotent)',
  description: "Sets each subject's compatibility level first; stops at the first version the registry rejects (exit code 1).",
  flags: dirFlag,
  needs: { registry: true },
  async run({ config, logger, json, out, domain: loadDomain }) {
    const catalog = (await loadDomain()).catalog();
    await requireRegistry(config.registry);
    const { registerSchemas } = load('schemas');
    const report = await registerSchemas({ registry: config.registry, logger, catalog });
    if (json) out.json(report);
    else {
      for (const r of report.registered) out.line(`${r.subject} v${r.version}  id ${r.id}  [${r.compatibility}]`);
      out.line(`${report.registered.length} schema version(s) registered`);
    }
    if (report.rejected) {
      const r = report.rejected;
      const field = r.problems[0]?.field ? ` (field ${r.problems[0].field})` : '';
      out.error(`outbox: schemas register: the registry rejected ${r.subject} v${r.version}${field}: ${r.message}`);
      return 1;
    }
    return 0;
  },
};

export const schemasGroup: CommandGroup = {
  name: 'schemas',
  summary: 'Check local Avro schemas against the registry, or register them',
  subcommands: [check, register],
};
