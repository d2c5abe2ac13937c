import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import * as avsc from 'avsc';
import { errorMessage, OutboxError } from '../core/errors';

/**
 * The local schema catalog: one Avro payload schema per event type and version in
 * `schemas/<aggregate_type>/<EventType>.v<N>.avsc`, each wrapped in the envelope record that carries the
 * event metadata. The envelope is what gets registered and what a message's value is.
 *
 * Subject naming (RecordNameStrategy): the subject of an event type is the full name of its envelope
 * record, `<namespace>.<aggregate_type>.<EventType>` (default namespace `outbox`, e.g.
 * `outbox.invoice.InvoiceIssued`). All versions of an event type share that name, so they are the
 * versions of one subject evolving under its compatibility level, and any number of event types can
 * share one topic (per-aggregate order) while a plain Confluent deserializer still decodes each message
 * from its schema id alone.
 */

export const DEFAULT_NAMESPACE = 'outbox';

/** Avro name component: letters, digits, underscore, not starting with a digit. */
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const FILE = /^([A-Za-z_][A-Za-z0-9_]*)\.v([1-9][0-9]{0,5})\.avsc$/;

export interface CatalogEntry {
  aggregateType: string;
  eventType: string;
  version: number;
  /** Registry subject of the event type (= envelope record full name). */
  subject: string;
  /** Envelope schema as JSON text, exactly what is registered. */
  envelopeSchema: string;
  /** The parsed envelope type. */
  type: avsc.Type;
  /** The parsed payload record type (the `payload` field of the envelope). */
  payloadType: avsc.Type;
  /** The .avsc file this entry was read from. */
  file: string;
}

export interface SchemaCatalog {
  /** Namespace prefix of every envelope record and subject. */
  readonly namespace: string;
  readonly dir: string;
  get(eventType: string, version: number): CatalogEntry | undefined;
  latest(eventType: string): CatalogEntry | undefined;
  /** All versions of one event type, ascending. */
  versions(eventType: string): CatalogEntry[];
  /** Event type whose envelope record full name (= subject) is `subject`. */
  bySubject(subject: string): CatalogEntry[];
  eventTypes(): string[];
  /** Every entry, ordered by subject then version. */
  all(): CatalogEntry[];
  /** Aggregate types that have at least one schema (directory names), sorted. */
  aggregateTypes(): string[];
  /** Where the schema of an (aggregate type, event type, version) belongs, relative to `dir`: `<aggregate_type>/<EventType>.v<N>.avsc`. */
  expectedFile(aggregateType: string, eventType: string, version: number): string;
  /**
   * Read the directory again (a schema file added while a relay runs). Returns false and keeps the
   * current entries when the directory is unreadable or a file is invalid; the problem is in `reloadProblem()`.
   */
  reload(): boolean;
  /** Why the last reload kept the previous entries (undefined after a successful one). */
  reloadProblem(): string | undefined;
}

export interface CatalogOptions {
  /** Namespace prefix of envelope records and subjects (default `outbox`); tests use a unique one. */
  namespace?: string;
  /**
   * A lookup (get, bySubject) of something the catalog does not hold reads the directory again, at most
   * once per this many milliseconds (default 1000; 0 = never), so a schema file added while a relay
   * runs is found when the parked event is retried.
   */
  reloadOnMissMs?: number;
}

/** Subject (and envelope record full name) of an event type. */
export function subjectName(namespace: string, aggregateType: string, eventType: string): string {
  return `${namespace}.${aggregateType}.${eventType}`;
}

/**
 * The configured schemas directory: OUTBOX_SCHEMAS_DIR, else the `schemasDir` of the config module
 * (OUTBOX_CONFIG, or outbox.config.* in the working directory). CONFIG_INVALID when neither is set.
 */
export function defaultSchemasDir(): string {
  const { environmentDomain } = require('../core/config-module') as typeof import('../core/config-module');
  const domain = environmentDomain();
  if (domain.schemasDir === undefined) {
    throw new OutboxError(
      'CONFIG_INVALID',
      `no event schemas: set OUTBOX_SCHEMAS_DIR (layout <dir>/<aggregate_type>/<EventType>.v<N>.avsc), or declare schemasDir in ${domain.file ?? 'outbox.config.*'}`,
      { details: { variable: 'OUTBOX_SCHEMAS_DIR' } },
    );
  }
  return domain.schemasDir;
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const nullableString = (name: string, doc: string): JsonObject => ({ name, type: ['null', 'string'], default: null, doc });

/** The envelope record for an event type and version, wrapping its payload record. */
export function envelopeSchemaFor({
  namespace,
  aggregateType,
  eventType,
  version,
  payload,
}: {
  namespace: string;
  aggregateType: string;
  eventType: string;
  version: number;
  payload: JsonObject;
}): JsonObject {
  return {
    type: 'record',
    name: eventType,
    namespace: `${namespace}.${aggregateType}`,
    doc: `kafka-outbox event ${aggregateType}/${eventType} v${version}: envelope (metadata) plus payload`,
    fields: [
      { name: 'event_id', type: 'string', doc: 'UUID of the event (idempotency key)' },
      { name: 'event_type', type: 'string' },
      { name: 'schema_version', type: 'int', doc: 'version of the payload schema the event was written with' },
      { name: 'aggregate_type', type: 'string' },
      { name: 'aggregate_id', type: 'string' },
      { name: 'aggregate_version', type: 'long' },
      { name: 'occurred_at', type: { type: 'long', logicalType: 'timestamp-micros' }, doc: 'microseconds since the Unix epoch, UTC' },
      nullableString('actor_id', 'who caused the event'),
      nullableString('trace_id', 'trace id of the request that wrote the event'),
      nullableString('correlation_id', 'id shared by all events of one business flow'),
      nullableString('causation_id', 'event_id of the event that caused this one'),
      nullableString('traceparent', 'W3C traceparent of the writing transaction'),
      { name: 'hash', type: 'string', doc: 'hash-chain link of this event, lower-case hex' },
      { name: 'prev_hash', type: 'string', doc: 'hash of the previous event of the aggregate, lower-case hex' },
      { name: 'payload', type: payload },
    ],
  };
}

function invalid(file: string, problem: string, cause?: unknown): never {
  throw new OutboxError('CONFIG_INVALID', `schema file ${file}: ${problem}`, { details: { file }, ...(cause !== undefined ? { cause } : {}) });
}

function readPayloadSchema(file: string, eventType: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    invalid(file, `is not valid JSON (${errorMessage(err)})`, err);
  }
  if (!isObject(parsed) || parsed.type !== 'record' || !Array.isArray(parsed.fields)) invalid(file, 'must be an Avro record schema ({"type":"record","fields":[...]})');
  const expected = `${eventType}Payload`;
  if (parsed.name !== undefined && parsed.name !== expected) invalid(file, `record name must be "${expected}" (or omitted), got ${JSON.stringify(parsed.name)}`);
  if (parsed.namespace !== undefined) invalid(file, 'must not set a namespace (it is derived from the directory: <namespace>.<aggregate_type>)');
  return { ...parsed, name: expected };
}

/**
 * Read every `<aggregate_type>/<EventType>.v<N>.avsc` under `dir`. Non-.avsc files are ignored; a .avsc
 * file that is misplaced, misnamed or not a valid Avro record, an event type under two aggregate types,
 * or a gap in an event type's versions is an OutboxError('CONFIG_INVALID') naming the file.
 */
export function loadCatalog(dir: string = defaultSchemasDir(), options: CatalogOptions = {}): SchemaCatalog {
  const namespace = options.namespace ?? DEFAULT_NAMESPACE;
  if (!namespace.split('.').every((p) => NAME.test(p))) {
    throw new OutboxError('CONFIG_INVALID', `schema namespace "${namespace}" is not a valid Avro namespace`, { details: { namespace } });
  }
  let state = scan(dir, namespace, new Map());
  const reloadOnMissMs = options.reloadOnMissMs ?? 1000;
  let lastScan = Date.now();
  let problem: string | undefined;

  const reload = (): boolean => {
    lastScan = Date.now();
    try {
      const previous = new Map(state.all.map((e) => [`${e.file}\u0000${e.envelopeSchema}`, e]));
      state = scan(dir, namespace, previous);
      problem = undefined;
      return true;
    } catch (err) {
      problem = errorMessage(err);
      return false;
    }
  };
  const onMiss = (): void => {
    if (reloadOnMissMs > 0 && Date.now() - lastScan >= reloadOnMissMs) reload();
  };
  const find = (eventType: string, version: number): CatalogEntry | undefined => state.byType.get(eventType)?.find((e) => e.version === version);

  return {
    namespace,
    dir,
    get: (eventType, version) => {
      const hit = find(eventType, version);
      if (hit) return hit;
      onMiss();
      return find(eventType, version);
    },
    latest: (eventType) => {
      const list = state.byType.get(eventType);
      return list ? list[list.length - 1] : undefined;
    },
    versions: (eventType) => [...(state.byType.get(eventType) ?? [])],
    bySubject: (subject) => {
      // Consumers cache the outcome per schema id, so a miss here is rare: always look again.
      if (!state.bySubject.has(subject) && reloadOnMissMs > 0) reload();
      return [...(state.bySubject.get(subject) ?? [])];
    },
    eventTypes: () => [...state.types],
    all: () => [...state.all],
    aggregateTypes: () => [...new Set(state.all.map((e) => e.aggregateType))].sort(),
    expectedFile: (aggregateType, eventType, version) => `${aggregateType}/${eventType}.v${version}.avsc`,
    reload,
    reloadProblem: () => problem,
  };
}

interface ScanResult {
  byType: Map<string, CatalogEntry[]>;
  bySubject: Map<string, CatalogEntry[]>;
  types: string[];
  all: CatalogEntry[];
}

/** One read of the directory; entries whose file and envelope did not change are kept (same objects). */
function scan(dir: string, namespace: string, previous: Map<string, CatalogEntry>): ScanResult {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new OutboxError('CONFIG_INVALID', `schemas directory ${dir} does not exist`, { details: { dir } });
  const byType = new Map<string, CatalogEntry[]>();
  for (const name of readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    if (!statSync(full).isDirectory()) {
      if (name.endsWith('.avsc')) invalid(full, 'must be in an aggregate directory: schemas/<aggregate_type>/<EventType>.v<N>.avsc');
      continue;
    }
    if (name.startsWith('.') || name === 'node_modules') continue;
    const files = readdirSync(full).filter((f) => f.endsWith('.avsc'));
    if (files.length === 0) continue;
    if (!NAME.test(name)) invalid(path.join(full, files[0]!), `aggregate directory "${name}" is not a valid Avro name`);
    const aggregateType = name;
    for (const f of files.sort()) {
      const file = path.join(full, f);
      const m = FILE.exec(f);
      if (!m) invalid(file, 'name must be <EventType>.v<N>.avsc (EventType a valid Avro name, N >= 1)');
      const eventType = m[1]!;
      const version = Number(m[2]);
      const payload = readPayloadSchema(file, eventType);
      const envelope = envelopeSchemaFor({ namespace, aggregateType, eventType, version, payload });
      let type: avsc.Type;
      try {
        type = avsc.Type.forSchema(envelope as avsc.Schema);
      } catch (err) {
        invalid(file, `is not a valid Avro schema: ${errorMessage(err)}`, err);
      }
      const payloadField = (type as avsc.types.RecordType).fields.find((fl) => fl.name === 'payload');
      if (!payloadField) invalid(file, 'envelope has no payload field (internal)');
      const list = byType.get(eventType) ?? [];
      const other = list[0];
      if (other && other.aggregateType !== aggregateType) invalid(file, `event type ${eventType} is also defined under ${other.aggregateType}/ (${other.file})`);
      const envelopeSchema = JSON.stringify(envelope);
      list.push(
        previous.get(`${file}\u0000${envelopeSchema}`) ?? {
          aggregateType,
          eventType,
          version,
          subject: subjectName(namespace, aggregateType, eventType),
          envelopeSchema,
          type,
          payloadType: payloadField.type,
          file,
        },
      );
      byType.set(eventType, list);
    }
  }
  for (const list of byType.values()) {
    list.sort((a, b) => a.version - b.version);
    list.forEach((e, i) => {
      if (e.version !== i + 1) invalid(e.file, `versions of ${e.eventType} must be 1, 2, 3... without gaps (found v${e.version} where v${i + 1} was expected)`);
    });
  }

  const types = [...byType.keys()].sort();
  const all = types.flatMap((t) => byType.get(t) ?? []).sort((a, b) => (a.subject === b.subject ? a.version - b.version : a.subject < b.subject ? -1 : 1));
  const bySubject = new Map<string, CatalogEntry[]>();
  for (const e of all) bySubject.set(e.subject, [...(bySubject.get(e.subject) ?? []), e]);
  return { byType, bySubject, types, all };
}
