import * as avsc from 'avsc';
import { errorMessage, OutboxError } from '../core/errors';
import type { CatalogEntry } from './catalog';
import { describeType } from './validate';

export const COMPATIBILITY_LEVELS = ['BACKWARD', 'BACKWARD_TRANSITIVE', 'FORWARD', 'FORWARD_TRANSITIVE', 'FULL', 'FULL_TRANSITIVE', 'NONE'] as const;
export type CompatibilityLevel = (typeof COMPATIBILITY_LEVELS)[number];

/**
 * Compatibility per subject: `default` (BACKWARD unless set) and overrides keyed by subject
 * (`outbox.invoice.InvoiceIssued`) or by event type (`InvoiceIssued`).
 */
export interface CompatibilityConfig {
  default?: CompatibilityLevel;
  subjects?: Record<string, CompatibilityLevel>;
}

export const DEFAULT_COMPATIBILITY: CompatibilityLevel = 'BACKWARD';

export function compatibilityFor(config: CompatibilityConfig | undefined, entry: Pick<CatalogEntry, 'subject' | 'eventType'>): CompatibilityLevel {
  const level = config?.subjects?.[entry.subject] ?? config?.subjects?.[entry.eventType] ?? config?.default ?? DEFAULT_COMPATIBILITY;
  if (!(COMPATIBILITY_LEVELS as readonly string[]).includes(level)) {
    throw new OutboxError('CONFIG_INVALID', `compatibility "${String(level)}" for ${entry.subject} is not one of ${COMPATIBILITY_LEVELS.join(', ')}`);
  }
  return level;
}

/**
 * Parse `SUBJECT_OR_TYPE=LEVEL[,...]` plus an optional default (for a CLI or environment variable).
 * `parseCompatibility('FULL', 'InvoiceIssued=NONE')`.
 */
export function parseCompatibility(defaultLevel: string | undefined, overrides: string | undefined): CompatibilityConfig {
  const norm = (v: string, what: string): CompatibilityLevel => {
    const up = v.trim().toUpperCase();
    if (!(COMPATIBILITY_LEVELS as readonly string[]).includes(up)) throw new OutboxError('CONFIG_INVALID', `${what}: "${v}" is not one of ${COMPATIBILITY_LEVELS.join(', ')}`);
    return up as CompatibilityLevel;
  };
  const out: CompatibilityConfig = {};
  if (defaultLevel !== undefined && defaultLevel.trim() !== '') out.default = norm(defaultLevel, 'compatibility');
  if (overrides !== undefined && overrides.trim() !== '') {
    const subjects: Record<string, CompatibilityLevel> = {};
    for (const pair of overrides.split(',')) {
      const m = /^\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z_]+)\s*$/.exec(pair);
      if (!m) throw new OutboxError('CONFIG_INVALID', `compatibility override "${pair.trim()}" is not SUBJECT=LEVEL`);
      subjects[m[1]!] = norm(m[2]!, `compatibility of ${m[1]!}`);
    }
    out.subjects = subjects;
  }
  return out;
}

/** Which directions a level checks, and against which earlier versions. */
export function directions(level: CompatibilityLevel): { backward: boolean; forward: boolean; transitive: boolean } {
  return {
    backward: level.startsWith('BACKWARD') || level.startsWith('FULL'),
    forward: level.startsWith('FORWARD') || level.startsWith('FULL'),
    transitive: level.endsWith('_TRANSITIVE'),
  };
}

export interface Incompatibility {
  /** Dotted path of the field inside the envelope, e.g. `payload.email` (empty for the record itself). */
  field: string;
  message: string;
}

const PROMOTIONS: Record<string, string[]> = {
  int: ['long', 'float', 'double'],
  long: ['float', 'double'],
  float: ['double'],
  string: ['bytes'],
  bytes: ['string'],
};

function baseName(t: avsc.Type): string {
  const n = t.typeName;
  return n.startsWith('logical:') ? ((t as unknown as { underlyingType: avsc.Type }).underlyingType?.typeName ?? n) : n;
}

function branches(t: avsc.Type): avsc.Type[] {
  return t.typeName.startsWith('union') ? (t as avsc.types.UnwrappedUnionType).types : [t];
}

function shortName(t: avsc.Type): string {
  const name = t.name;
  if (name === undefined) return describeType(t);
  return name.slice(name.lastIndexOf('.') + 1);
}

/** Can a reader of type `r` read a value written as `w` (ignoring deeper structure)? */
function matches(r: avsc.Type, w: avsc.Type): boolean {
  const rn = baseName(r);
  const wn = baseName(w);
  if (rn === wn) {
    if (rn === 'record' || rn === 'enum' || rn === 'fixed' || rn === 'error') {
      const rShort = shortName(r);
      return rShort === shortName(w) || (r.aliases ?? []).some((a) => a.slice(a.lastIndexOf('.') + 1) === shortName(w));
    }
    return true;
  }
  return (PROMOTIONS[wn] ?? []).includes(rn);
}

/**
 * Why data written with `writer` cannot be read with `reader`, one entry per offending field. `labels`
 * names the two versions in messages (e.g. { reader: 'v2', writer: 'v1' }); `readerIsNew` phrases a missing
 * field as "added without a default" (reader newer) or "removed" (reader older).
 */
export function explainIncompatibility(
  reader: avsc.Type,
  writer: avsc.Type,
  labels: { reader: string; writer: string; readerIsNew: boolean },
  path: string[] = [],
): Incompatibility[] {
  const out: Incompatibility[] = [];
  const field = path.join('.');
  const rBranches = branches(reader);
  const wBranches = branches(writer);
  const isUnion = rBranches.length > 1 || wBranches.length > 1 || reader.typeName.startsWith('union') || writer.typeName.startsWith('union');
  if (isUnion) {
    for (const wb of wBranches) {
      const rb = rBranches.find((r) => matches(r, wb));
      if (!rb) {
        out.push({
          field,
          message: `${field || 'value'}: type changed from ${describeType(labels.readerIsNew ? writer : reader)} (${labels.readerIsNew ? labels.writer : labels.reader}) to ${describeType(labels.readerIsNew ? reader : writer)} (${labels.readerIsNew ? labels.reader : labels.writer}); ${describeType(wb)} written by ${labels.writer} cannot be read by ${labels.reader}`,
        });
      } else if (!(rBranches.length === 1 && wBranches.length === 1)) {
        out.push(...explainIncompatibility(rb, wb, labels, path));
      }
    }
    return out;
  }
  if (!matches(reader, writer)) {
    const [oldT, newT, oldL, newL] = labels.readerIsNew ? [writer, reader, labels.writer, labels.reader] : [reader, writer, labels.reader, labels.writer];
    out.push({ field, message: `${field || 'value'}: type changed from ${describeType(oldT)} (${oldL}) to ${describeType(newT)} (${newL})` });
    return out;
  }
  const kind = baseName(reader);
  if (kind === 'record' || kind === 'error') {
    const rFields = (reader as avsc.types.RecordType).fields;
    const wFields = (writer as avsc.types.RecordType).fields;
    for (const rf of rFields) {
      const wf = wFields.find((f) => f.name === rf.name) ?? wFields.find((f) => (rf.aliases ?? []).includes(f.name));
      const fpath = [...path, rf.name];
      const fname = fpath.join('.');
      if (!wf) {
        if (rf.defaultValue() === undefined) {
          out.push({
            field: fname,
            message: labels.readerIsNew
              ? `${fname}: added in ${labels.reader} without a default, so events written with ${labels.writer} (which have no ${rf.name}) cannot be read`
              : `${fname}: removed in ${labels.writer}, but ${labels.reader} readers require it (it has no default in ${labels.reader})`,
          });
        }
        continue;
      }
      out.push(...explainIncompatibility(rf.type, wf.type, labels, fpath));
    }
  } else if (kind === 'enum') {
    const rSymbols = (reader as avsc.types.EnumType).symbols;
    const rDefault = (reader as unknown as { default?: string }).default;
    for (const s of (writer as avsc.types.EnumType).symbols) {
      if (!rSymbols.includes(s) && rDefault === undefined)
        out.push({ field, message: `${field || 'value'}: enum symbol ${s} of ${labels.writer} is missing in ${labels.reader} (and ${labels.reader} has no enum default)` });
    }
  } else if (kind === 'array') {
    out.push(...explainIncompatibility((reader as avsc.types.ArrayType).itemsType, (writer as avsc.types.ArrayType).itemsType, labels, [...path, '[]']));
  } else if (kind === 'map') {
    out.push(...explainIncompatibility((reader as avsc.types.MapType).valuesType as avsc.Type, (writer as avsc.types.MapType).valuesType as avsc.Type, labels, [...path, '{}']));
  } else if (kind === 'fixed') {
    const rs = (reader as avsc.types.FixedType).size;
    const ws = (writer as avsc.types.FixedType).size;
    if (rs !== ws) out.push({ field, message: `${field || 'value'}: fixed size changed from ${ws} (${labels.writer}) to ${rs} (${labels.reader})` });
  }
  return out;
}

/**
 * Can `reader` read data written with `writer`? The verdict is avsc's resolver (the Avro resolution rules);
 * the explanation is the structural walk above, with avsc's own message as the fallback.
 */
export function readable(reader: avsc.Type, writer: avsc.Type, labels: { reader: string; writer: string; readerIsNew: boolean }): Incompatibility[] {
  let resolverError: string | undefined;
  try {
    reader.createResolver(writer);
  } catch (err) {
    resolverError = errorMessage(err);
  }
  const explained = explainIncompatibility(reader, writer, labels);
  if (resolverError === undefined) return [];
  return explained.length > 0 ? explained : [{ field: '', message: `${labels.reader} cannot read ${labels.writer}: ${resolverError}` }];
}
