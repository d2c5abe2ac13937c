import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../core/config';
import { OutboxError } from '../../core/errors';
import { OPTIONS, option, renderConfigurationDoc } from '../../core/options';

// Every setting is declared once in core/options.ts, with its doc and default; the docs are generated from
// the declarations, and a deployment with several mistakes learns all of them from one start-up attempt.

const ROOT = path.join(__dirname, '..', '..');
const LIBRARY = ['core', 'cli', 'relay', 'projector', 'schemas', 'writer', 'console', 'event', 'audit', 'infra'];

function sources(dir: string): string[] {
  let out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(sources(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

test('docs/configuration.md is generated from the declarations (run `npm run docs:config` after changing them)', () => {
  expect(readFileSync(path.join(ROOT, 'docs', 'configuration.md'), 'utf8')).toBe(renderConfigurationDoc());
});

test('every setting named in the library code is declared, with a doc, an example and a default or a rule', () => {
  const declared = new Set(OPTIONS.map((o) => o.name));
  expect(declared.size).toBe(OPTIONS.length);
  const named = new Set<string>();
  for (const file of LIBRARY.flatMap((d) => sources(path.join(ROOT, d)))) {
    if (file.endsWith(path.join('core', 'options.ts'))) continue;
    for (const m of readFileSync(file, 'utf8').matchAll(/['"`]((?:OUTBOX|KAFKA|SCHEMA_REGISTRY)_[A-Z0-9_]+|DATABASE_URL|LOG_LEVEL)['"`]/g)) named.add(m[1]!);
  }
  // Names that are not settings: error codes and the CLI's own child-process switch.
  const notSettings = new Set(['KAFKA_UNAVAILABLE', 'OUTBOX_CLI_MAIN']);
  const undeclared = [...named].filter((n) => !declared.has(n) && !notSettings.has(n));
  expect(undeclared).toEqual([]);
  for (const o of OPTIONS) {
    expect({ name: o.name, doc: o.doc.length > 10, example: o.example.length > 0, def: o.default !== undefined || o.defaultText !== undefined }).toEqual({
      name: o.name,
      doc: true,
      example: true,
      def: true,
    });
  }
  expect(() => option('OUTBOX_NO_SUCH_SETTING')).toThrow(/not declared/);
});

test('a start-up with several invalid settings reports every one of them together, each naming its variable', () => {
  let err: unknown;
  try {
    loadConfig(
      {
        DATABASE_URL: 'mysql://db/x',
        KAFKA_BROKERS: 'nohostport',
        OUTBOX_RELAY_BATCH_SIZE: 'many',
        OUTBOX_DELIVERED_RETENTION: 'a week',
        LOG_LEVEL: 'loud',
        KAFKA_SASL_MECHANISM: 'PLAIN',
      },
      { database: true, kafka: true },
    );
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(OutboxError);
  const e = err as OutboxError;
  expect(e.code).toBe('CONFIG_INVALID');
  const problems = (e.details.problems as Array<{ variable: string }>).map((p) => p.variable).sort();
  expect(problems).toEqual(
    ['DATABASE_URL', 'KAFKA_BROKERS', 'KAFKA_SASL_PASSWORD', 'KAFKA_SASL_USERNAME', 'LOG_LEVEL', 'OUTBOX_DELIVERED_RETENTION', 'OUTBOX_RELAY_BATCH_SIZE'].sort(),
  );
  expect(e.message.split('; ')).toHaveLength(7);
  for (const v of problems) expect(e.message).toMatch(new RegExp(`(^|; )${v} `));
});

test('defaults come from the declarations', () => {
  const c = loadConfig({});
  expect(c.relay.batchSize).toBe(option('OUTBOX_RELAY_BATCH_SIZE').default);
  expect(c.relay.deliveredRetentionMs).toBe(option('OUTBOX_DELIVERED_RETENTION').default);
  expect(c.schema).toBe(option('OUTBOX_SCHEMA').default);
  expect(c.console?.port).toBe(option('OUTBOX_CONSOLE_PORT').default);
});
