import * as avsc from 'avsc';

/**
 * Readable validation of a value against an avsc type: `email: expected string, got null`, one entry per
 * problem, with the field path (dots for record fields, [i] for array items, [key] for map values).
 * Stricter than avsc's isValid in one way: a field that the record does not declare is a problem too
 * (a payload written for another version must not be silently truncated).
 */
export function validationProblems(type: avsc.Type, value: unknown, basePath: string[] = []): string[] {
  const problems: string[] = [];
  type.isValid(value, {
    errorHook: (path: string[], val: unknown, t: avsc.Type) => {
      problems.push(`${formatPath([...basePath, ...path])}: expected ${describeType(t, true)}, got ${describeValue(val)}`);
    },
  });
  unknownFields(type, value, basePath, problems);
  return problems;
}

export function formatPath(path: string[]): string {
  let out = '';
  for (const p of path) {
    if (/^\d+$/.test(p)) out += `[${p}]`;
    else out += out === '' ? p : `.${p}`;
  }
  return out === '' ? '(value)' : out;
}

/** `detailed` adds ranges to int/long (for payload validation messages). */
export function describeType(t: avsc.Type, detailed = false): string {
  const name = t.typeName;
  const sub = (x: avsc.Type): string => describeType(x, detailed);
  if (name.startsWith('union')) return unionBranches(t).map(sub).join(' or ');
  if (name === 'record' || name === 'error') return `record ${t.name ?? ''}`.trim();
  if (name === 'enum') return `one of ${(t as avsc.types.EnumType).symbols.join(', ')}`;
  if (name === 'array') return `array of ${sub((t as avsc.types.ArrayType).itemsType)}`;
  if (name === 'map') return `map of ${sub((t as avsc.types.MapType).valuesType as avsc.Type)}`;
  if (name === 'fixed') return `fixed(${(t as avsc.types.FixedType).size})`;
  if (detailed && name === 'long') return 'long (safe integer)';
  if (detailed && name === 'int') return 'int (32-bit integer)';
  return name;
}

function unionBranches(t: avsc.Type): avsc.Type[] {
  return (t as avsc.types.UnwrappedUnionType).types;
}

export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (field missing)';
  if (v === null) return 'null';
  if (Buffer.isBuffer(v)) return `bytes(${v.length})`;
  if (Array.isArray(v)) return `an array`;
  if (typeof v === 'object') return 'an object';
  const text = typeof v === 'string' ? JSON.stringify(v) : String(v);
  const shown = text.length > 40 ? `${text.slice(0, 37)}...` : text;
  return `${typeof v} ${shown}`;
}

function unknownFields(type: avsc.Type, value: unknown, path: string[], out: string[]): void {
  const name = type.typeName;
  if (name === 'record' || name === 'error') {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
    const fields = (type as avsc.types.RecordType).fields;
    const declared = new Set(fields.map((f) => f.name));
    for (const key of Object.keys(value)) {
      if (!declared.has(key)) out.push(`${formatPath([...path, key])}: not a field of ${type.name ?? 'the record'} (declared: ${[...declared].join(', ')})`);
    }
    for (const f of fields) unknownFields(f.type, (value as Record<string, unknown>)[f.name], [...path, f.name], out);
  } else if (name === 'array') {
    const items = (type as avsc.types.ArrayType).itemsType;
    if (Array.isArray(value)) value.forEach((item, i) => unknownFields(items, item, [...path, String(i)], out));
  } else if (name === 'map') {
    const values = (type as avsc.types.MapType).valuesType as avsc.Type;
    if (typeof value === 'object' && value !== null) for (const [k, v] of Object.entries(value)) unknownFields(values, v, [...path, k], out);
  } else if (name === 'union:unwrapped') {
    // Descend into the single record branch if the value is an object.
    const records = unionBranches(type).filter((t) => t.typeName === 'record');
    if (records.length === 1 && typeof value === 'object' && value !== null) unknownFields(records[0]!, value, path, out);
  }
}
