import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as avsc from 'avsc';
import { isOutboxError } from '../../core/errors';
import { loadCatalog, defaultSchemasDir, subjectName } from '../../schemas/catalog';
import type { LatestPayloads, PayloadsByVersion } from '../../examples/users-service/types';

// The catalog reads schemas/<aggregate>/<EventType>.v<N>.avsc; no servers needed.

function tempCopy(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'schemas-'));
  cpSync(path.join(defaultSchemasDir(), 'user'), path.join(dir, 'user'), { recursive: true });
  return dir;
}

test('loads the project schemas: every event type and version, one subject per event type', () => {
  const catalog = loadCatalog();
  expect(catalog.eventTypes()).toEqual(['UserDeactivated', 'UserEmailChanged', 'UserRegistered', 'UserRenamed']);
  expect(catalog.all().map((e) => `${e.eventType} v${e.version}`)).toEqual([
    'UserDeactivated v1',
    'UserEmailChanged v1',
    'UserEmailChanged v2',
    'UserRegistered v1',
    'UserRenamed v1',
    'UserRenamed v2',
  ]);
  const v2 = catalog.get('UserEmailChanged', 2)!;
  expect(v2).toMatchObject({ aggregateType: 'user', eventType: 'UserEmailChanged', version: 2, subject: 'outbox.user.UserEmailChanged' });
  expect(catalog.latest('UserEmailChanged')).toBe(v2);
  expect(catalog.get('UserEmailChanged', 3)).toBeUndefined();
  expect(catalog.get('UserFoo', 1)).toBeUndefined();
  expect(subjectName('outbox', 'user', 'UserRenamed')).toBe('outbox.user.UserRenamed');
  // The registered text is the envelope; its record full name is the subject.
  const schema = JSON.parse(v2.envelopeSchema) as { name: string; namespace: string; fields: { name: string }[] };
  expect(`${schema.namespace}.${schema.name}`).toBe(v2.subject);
  expect(schema.fields.map((f) => f.name)).toEqual([
    'event_id',
    'event_type',
    'schema_version',
    'aggregate_type',
    'aggregate_id',
    'aggregate_version',
    'occurred_at',
    'actor_id',
    'trace_id',
    'correlation_id',
    'causation_id',
    'traceparent',
    'hash',
    'prev_hash',
    'payload',
  ]);
  expect(v2.type.name).toBe('outbox.user.UserEmailChanged');
  expect(v2.payloadType.name).toBe('outbox.user.UserEmailChangedPayload');
});

test('namespace option gives other subjects (used by tests to stay out of the real ones)', () => {
  const catalog = loadCatalog(undefined, { namespace: 'ns_abc.x' });
  expect(catalog.latest('UserRenamed')!.subject).toBe('ns_abc.x.user.UserRenamed');
  expect(() => loadCatalog(undefined, { namespace: '1bad' })).toThrow(/namespace/);
});

test('the declared TypeScript payload types match the .avsc fields', () => {
  const catalog = loadCatalog();
  // One sample per (type, version), typed by PayloadsByVersion: tsc checks the shape, the test checks avsc agrees.
  const samples: { [K in keyof PayloadsByVersion]: { [V in keyof PayloadsByVersion[K]]: PayloadsByVersion[K][V] } } = {
    UserRegistered: { 1: { email: 'a@example.com', name: 'Ada Lovelace' } },
    UserEmailChanged: { 1: { email: 'a@example.com' }, 2: { new_email: 'a@example.com', verified: true } },
    UserRenamed: { 1: { name: 'Ada Lovelace' }, 2: { first_name: 'Ada', last_name: 'Lovelace' } },
    UserDeactivated: { 1: { reason: 'left' } },
  };
  for (const [type, byVersion] of Object.entries(samples)) {
    for (const [version, payload] of Object.entries(byVersion as Record<string, object>)) {
      const entry = catalog.get(type, Number(version))!;
      expect(entry).toBeDefined();
      const fields = (entry.payloadType as avsc.types.RecordType).fields.map((f) => f.name).sort();
      expect(Object.keys(payload).sort()).toEqual(fields);
      expect(entry.payloadType.isValid(payload)).toBe(true);
    }
  }
  const latest: (keyof LatestPayloads)[] = ['UserRegistered', 'UserEmailChanged', 'UserRenamed', 'UserDeactivated'];
  expect(latest.sort()).toEqual(catalog.eventTypes());
  expect(Object.keys(samples).sort()).toEqual(catalog.eventTypes());
});

test('malformed, misnamed or gapped schema files are CONFIG_INVALID naming the file', () => {
  const cases: [string, (dir: string) => void, RegExp][] = [
    ['bad json', (d) => writeFileSync(path.join(d, 'user', 'UserFoo.v1.avsc'), '{ nope'), /UserFoo\.v1\.avsc.*not valid JSON/],
    ['not a record', (d) => writeFileSync(path.join(d, 'user', 'UserFoo.v1.avsc'), '"string"'), /UserFoo\.v1\.avsc.*must be an Avro record/],
    [
      'bad avro type',
      (d) => writeFileSync(path.join(d, 'user', 'UserFoo.v1.avsc'), '{"type":"record","fields":[{"name":"a","type":"strang"}]}'),
      /UserFoo\.v1\.avsc.*not a valid Avro schema/,
    ],
    ['misnamed file', (d) => writeFileSync(path.join(d, 'user', 'UserFoo.avsc'), '{"type":"record","fields":[]}'), /UserFoo\.avsc.*<EventType>\.v<N>\.avsc/],
    ['top-level file', (d) => writeFileSync(path.join(d, 'UserFoo.v1.avsc'), '{"type":"record","fields":[]}'), /UserFoo\.v1\.avsc.*aggregate directory/],
    ['gap', (d) => renameSync(path.join(d, 'user', 'UserRenamed.v2.avsc'), path.join(d, 'user', 'UserRenamed.v3.avsc')), /UserRenamed\.v3\.avsc.*without gaps/],
    ['wrong record name', (d) => writeFileSync(path.join(d, 'user', 'UserFoo.v1.avsc'), '{"type":"record","name":"Other","fields":[]}'), /UserFoo\.v1\.avsc.*UserFooPayload/],
    ['own namespace', (d) => writeFileSync(path.join(d, 'user', 'UserFoo.v1.avsc'), '{"type":"record","namespace":"x","fields":[]}'), /UserFoo\.v1\.avsc.*namespace/],
  ];
  for (const [name, mutate, message] of cases) {
    const dir = tempCopy();
    try {
      mutate(dir);
      let caught: unknown;
      try {
        loadCatalog(dir);
      } catch (err) {
        caught = err;
      }
      expect([name, isOutboxError(caught, 'CONFIG_INVALID')]).toEqual([name, true]);
      expect((caught as Error).message).toMatch(message);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('non-.avsc files are ignored', () => {
  const dir = tempCopy();
  try {
    writeFileSync(path.join(dir, 'user', 'README.md'), 'notes');
    writeFileSync(path.join(dir, 'types.ts'), 'export {}');
    expect(loadCatalog(dir).all()).toHaveLength(6);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a schema file added later is found by the next lookup that misses; an invalid one keeps the entries read before', () => {
  const dir = tempCopy();
  try {
    const catalog = loadCatalog(dir, { reloadOnMissMs: 1 });
    expect(catalog.aggregateTypes()).toEqual(['user']);
    expect(catalog.expectedFile('invoice', 'InvoiceIssued', 1)).toBe('invoice/InvoiceIssued.v1.avsc');
    const before = catalog.get('UserRenamed', 2);
    mkdirSync(path.join(dir, 'invoice'));
    writeFileSync(path.join(dir, 'invoice', 'InvoiceIssued.v1.avsc'), '{"type":"record","fields":[{"name":"amount_cents","type":"long"}]}');
    const deadline = Date.now() + 5;
    while (Date.now() < deadline) {
      /* let reloadOnMissMs pass */
    }
    // A consumer meeting the new subject (a schema id of the registry) finds it too.
    expect(catalog.bySubject('outbox.invoice.InvoiceIssued').map((e) => e.version)).toEqual([1]);
    expect(catalog.get('InvoiceIssued', 1)).toMatchObject({ aggregateType: 'invoice', subject: 'outbox.invoice.InvoiceIssued' });
    expect(catalog.aggregateTypes()).toEqual(['invoice', 'user']);
    // Unchanged files keep their entries (the encoder's cached schema ids stay valid).
    expect(catalog.get('UserRenamed', 2)).toBe(before);

    writeFileSync(path.join(dir, 'invoice', 'InvoicePaid.v1.avsc'), '{ nope');
    expect(catalog.reload()).toBe(false);
    expect(catalog.reloadProblem()).toMatch(/InvoicePaid\.v1\.avsc.*not valid JSON/);
    expect(catalog.get('InvoiceIssued', 1)).toBeDefined();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
