import * as avsc from 'avsc';
import type { RegistrySettings } from '../core/config';
import { errorMessage } from '../core/errors';
import type { Logger } from '../core/logger';
import { loadCatalog, type CatalogEntry, type SchemaCatalog } from './catalog';
import { compatibilityFor, directions, readable, type CompatibilityConfig, type CompatibilityLevel, type Incompatibility } from './compatibility';
import { lookupSchemaId, registryCompatible, subjectCompatibility, subjectVersions } from './registry-http';
import { defaultUpcasters, type UpcasterRegistry } from './upcasters';

export interface CompatibilityProblem {
  subject: string;
  /** Local version that breaks. */
  version: number;
  /** Offending field, dotted path inside the envelope (e.g. `payload.email`); empty when unknown. */
  field: string;
  message: string;
  /** `local`: found by comparing schemas here; `registry`: the registry's compatibility endpoint said no. */
  source: 'local' | 'registry';
}

export interface SubjectStatus {
  subject: string;
  eventType: string;
  compatibility: CompatibilityLevel;
  /** Level configured on the subject in the registry (undefined: none, the registry's global level applies). */
  registryCompatibility: string | undefined;
  /** Local versions already registered, with their ids. */
  registered: { version: number; id: number }[];
  /** Local versions not registered yet. */
  pending: number[];
}

export interface CheckReport {
  ok: boolean;
  problems: CompatibilityProblem[];
  warnings: string[];
  subjects: SubjectStatus[];
}

export interface CheckSchemasOptions {
  registry: RegistrySettings;
  /** The schemas to check (default: loadCatalog(dir) with the default namespace). */
  catalog?: SchemaCatalog;
  /** Directory of the .avsc files when no catalog is given (the CLI's --dir). */
  dir?: string;
  /** Accepted for symmetry with registerSchemas; the check logs nothing. */
  logger?: Logger;
  /** Default BACKWARD for every subject; overrides by subject or event type. */
  compatibility?: CompatibilityConfig;
  /** Upcasters (default: the project's); a step with an upcaster needs no Avro readability for decoding. */
  upcasters?: UpcasterRegistry;
}

interface Known {
  type: avsc.Type;
  label: string;
  /** Local version with the same schema, when there is one (its comparisons are covered by the local chain). */
  localVersion: number | undefined;
}

/** Problems of `entry` (newer) against an older schema under a level's directions. */
function compare(level: CompatibilityLevel, newer: { type: avsc.Type; label: string }, older: { type: avsc.Type; label: string }): Incompatibility[] {
  const d = directions(level);
  const out: Incompatibility[] = [];
  if (d.backward) out.push(...readable(newer.type, older.type, { reader: newer.label, writer: older.label, readerIsNew: true }));
  if (d.forward) out.push(...readable(older.type, newer.type, { reader: older.label, writer: newer.label, readerIsNew: false }));
  return out;
}

/**
 * `outbox schemas check`: compares every local schema with the previous local versions and with what the
 * registry holds, under the configured compatibility (default BACKWARD, overridable per subject), and
 * asks the registry's compatibility endpoint for its verdict on the first version it does not have yet.
 * Read-only: it registers nothing and changes no configuration.
 */
export async function checkSchemas(options: CheckSchemasOptions): Promise<CheckReport> {
  const { registry } = options;
  const catalog = options.catalog ?? loadCatalog(options.dir);
  const upcasters = options.upcasters ?? defaultUpcasters();
  const problems: CompatibilityProblem[] = [];
  const warnings: string[] = [];
  const subjects: SubjectStatus[] = [];

  for (const eventType of catalog.eventTypes()) {
    const versions = catalog.versions(eventType);
    const first = versions[0];
    if (!first) continue;
    const subject = first.subject;
    const level = compatibilityFor(options.compatibility, first);
    const d = directions(level);
    const add = (entry: CatalogEntry, list: Incompatibility[], source: 'local' | 'registry'): void => {
      for (const p of list) {
        if (!problems.some((q) => q.subject === subject && q.version === entry.version && q.message === p.message)) {
          problems.push({ subject, version: entry.version, field: p.field, message: p.message, source });
        }
      }
    };

    // 1. Between consecutive local versions (all earlier ones when transitive).
    versions.forEach((entry, i) => {
      if (i === 0) return;
      const olders = d.transitive ? versions.slice(0, i) : [versions[i - 1]!];
      for (const older of olders) add(entry, compare(level, { type: entry.type, label: `v${entry.version}` }, { type: older.type, label: `v${older.version}` }), 'local');
      // Consumers read vN-1 events as vN by Avro resolution unless an upcaster bridges the step.
      const prev = versions[i - 1]!;
      if (!d.backward && !upcasters.has(eventType, prev.version)) {
        const unreadable = readable(entry.type, prev.type, { reader: `v${entry.version}`, writer: `v${prev.version}`, readerIsNew: true });
        add(
          entry,
          unreadable.map((p) => ({
            field: p.field,
            message: `${p.message} (no upcaster ${eventType} v${prev.version}->v${entry.version} is registered, so consumers could not read v${prev.version} events)`,
          })),
          'local',
        );
      }
    });

    // 2. Against the registry.
    const registryLevel = await subjectCompatibility(registry, subject);
    if (registryLevel !== undefined && registryLevel !== level) {
      warnings.push(`${subject}: the registry enforces ${registryLevel}, configured is ${level} (outbox schemas register applies the configured level)`);
    }
    const registeredList = await subjectVersions(registry, subject);
    const status: SubjectStatus = { subject, eventType, compatibility: level, registryCompatibility: registryLevel, registered: [], pending: [] };
    const matchedIds = new Map<number, number>(); // registry id -> local version
    for (const entry of versions) {
      const found = await lookupSchemaId(registry, subject, entry.envelopeSchema);
      if (found) {
        status.registered.push({ version: entry.version, id: found.id });
        matchedIds.set(found.id, entry.version);
      } else status.pending.push(entry.version);
    }
    const history: Known[] = [];
    for (const r of registeredList) {
      let type: avsc.Type;
      try {
        type = avsc.Type.forSchema(JSON.parse(r.schema) as avsc.Schema);
      } catch (err) {
        warnings.push(`${subject}: registered version ${r.version} (id ${r.id}) is not a readable Avro schema: ${errorMessage(err)}`);
        continue;
      }
      const localVersion = matchedIds.get(r.id);
      if (localVersion === undefined) warnings.push(`${subject}: registered version ${r.version} (id ${r.id}) matches no local schema file`);
      history.push({ type, label: `registered version ${r.version} (id ${r.id})`, localVersion });
    }
    let askedRegistry = false;
    for (const entry of versions) {
      if (!status.pending.includes(entry.version)) continue;
      const against = d.transitive ? history : history.slice(-1);
      for (const known of against) {
        if (known.localVersion !== undefined) continue; // same schema as a local version: covered by step 1
        add(entry, compare(level, { type: entry.type, label: `v${entry.version}` }, known), 'local');
      }
      if (!askedRegistry && history.length > 0) {
        askedRegistry = true;
        const verdict = await registryCompatible(registry, subject, entry.envelopeSchema);
        const effective = registryLevel ?? 'its global level';
        if (verdict && !verdict.compatible) {
          const local = problems.filter((p) => p.subject === subject && p.version === entry.version);
          const detail = verdict.messages.length > 0 ? `: ${verdict.messages.join('; ')}` : '';
          add(
            entry,
            [
              {
                field: local[0]?.field ?? '',
                message: `the registry (${effective}) rejects v${entry.version} against its latest registered version${detail}${local.length > 0 ? ` (see ${local.map((p) => p.field || 'above').join(', ')})` : ''}`,
              },
            ],
            'registry',
          );
        }
      }
      history.push({ type: entry.type, label: `v${entry.version}`, localVersion: entry.version });
    }
    subjects.push(status);
  }
  return { ok: problems.length === 0, problems, warnings, subjects };
}

/** The report as text for a terminal (the CLI prints this and exits non-zero when !ok). */
export function formatCheckReport(report: CheckReport): string {
  const lines: string[] = [];
  for (const s of report.subjects) {
    const reg = s.registered.map((r) => `v${r.version}=id ${r.id}`).join(', ') || 'none';
    lines.push(`${s.subject} [${s.compatibility}]: registered ${reg}; pending ${s.pending.map((v) => `v${v}`).join(', ') || 'none'}`);
  }
  for (const w of report.warnings) lines.push(`warning: ${w}`);
  for (const p of report.problems) lines.push(`INCOMPATIBLE ${p.subject} v${p.version}${p.field ? ` field ${p.field}` : ''}: ${p.message}`);
  lines.push(report.ok ? 'schemas OK' : `${report.problems.length} incompatible change(s)`);
  return lines.join('\n');
}
