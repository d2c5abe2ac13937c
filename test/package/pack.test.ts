import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { npmInstall, packLibrary, run } from '../support/pack';
import { REPO_ROOT } from '../support/stack';

// What a team gets from `npm install kafka-outbox`: the tarball `npm pack` makes from a clean copy of
// the checkout (so the build must run by itself before packing), installed into an empty project.

const SUBPATHS = ['kafka-outbox', 'kafka-outbox/relay', 'kafka-outbox/projector', 'kafka-outbox/schemas'];

let work: string;
let tarball: string;
let entries: string[];
let consumer: string;
let pkg: { dependencies?: Record<string, string>; peerDependenciesMeta?: Record<string, { optional?: boolean }>; peerDependencies?: Record<string, string> };

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'outbox-pack-'));

  // A clean copy: the files a clone would have (tracked and new, minus .gitignore'd ones such as dist/).
  const packed = await packLibrary(work);
  expect(packed.sourceHadDist).toBe(false);
  tarball = packed.tarball;
  const source = packed.source;
  entries = (await run('tar', ['-tzf', tarball], { cwd: work })).stdout
    .split('\n')
    .filter((l) => l !== '' && !l.endsWith('/'))
    .map((l) => l.replace(/^package\//, ''));
  pkg = JSON.parse(readFileSync(path.join(source, 'package.json'), 'utf8'));

  // An empty project, with the checkout's npm settings if it has any; from the local cache when it holds
  // everything, otherwise from the configured registry.
  consumer = path.join(work, 'consumer');
  mkdirSync(consumer);
  writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'outbox-consumer', version: '1.0.0', private: true }));
  await npmInstall(consumer, [tarball]);
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the tarball holds the compiled package, its migrations and licence, and no sources, tests or tooling', () => {
  expect(entries).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE', 'bin/outbox.js', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js']));
  for (const sub of ['relay', 'projector', 'schemas']) expect(entries).toEqual(expect.arrayContaining([`dist/${sub}/index.js`, `dist/${sub}/index.d.ts`]));
  // The migrations the `migrate` command applies, and the console's static assets, next to the compiled code.
  const migrations = readdirSync(path.join(REPO_ROOT, 'infra/migrations')).filter((f) => f.endsWith('.sql'));
  expect(migrations.length).toBeGreaterThan(0);
  for (const m of migrations) expect(entries).toEqual(expect.arrayContaining([`dist/infra/migrations/${m}`, `infra/migrations/${m}`]));
  for (const a of readdirSync(path.join(REPO_ROOT, 'console/assets'))) expect(entries).toContain(`dist/console/assets/${a}`);

  const unwanted = entries.filter(
    (f) =>
      /^(test|bench|\.ci|\.stack|node_modules|docs)\//.test(f) ||
      /(^|\/)test\//.test(f) ||
      (f.endsWith('.ts') && !f.endsWith('.d.ts')) ||
      f.endsWith('.map') ||
      /\.test\.[jt]s$/.test(f),
  );
  expect(unwanted).toEqual([]);
  const topLevel = [...new Set(entries.map((f) => f.split('/')[0]!))].sort();
  expect(topLevel).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'bin', 'dist', 'package.json']));
  expect(topLevel.filter((t) => !['LICENSE', 'README.md', 'bin', 'dist', 'package.json', 'infra', 'schemas'].includes(t))).toEqual([]);
});

test('every subpath loads from plain CommonJS, with its types', async () => {
  const script = `
    const out = {};
    for (const s of ${JSON.stringify(SUBPATHS)}) out[s] = Object.keys(require(s)).sort();
    console.log(JSON.stringify(out));`;
  writeFileSync(path.join(consumer, 'load.cjs'), script);
  const { stdout } = await run(process.execPath, ['load.cjs'], { cwd: consumer });
  const keys = JSON.parse(stdout) as Record<string, string[]>;
  expect(keys['kafka-outbox']).toEqual(expect.arrayContaining(['appendEvents', 'withTransaction', 'verifyChain', 'OutboxError']));
  expect(keys['kafka-outbox/relay']).toEqual(expect.arrayContaining(['startRelay']));
  expect(keys['kafka-outbox/projector']).toEqual(expect.arrayContaining(['startProjector', 'loadAggregate', 'rebuildProjection']));
  expect(keys['kafka-outbox/schemas']).toEqual(expect.arrayContaining(['loadCatalog', 'createEventEncoder', 'createEventDecoder']));

  // The exports map names a types file for each subpath, and it is in the tarball.
  const manifest = JSON.parse(readFileSync(path.join(consumer, 'node_modules/kafka-outbox/package.json'), 'utf8')) as {
    exports: Record<string, { types: string; require: string; import: string }>;
  };
  for (const s of SUBPATHS) {
    const key = s === 'kafka-outbox' ? '.' : `./${s.slice('kafka-outbox/'.length)}`;
    const entry = manifest.exports[key]!;
    for (const file of [entry.types, entry.require, entry.import]) expect(existsSync(path.join(consumer, 'node_modules/kafka-outbox', file))).toBe(true);
  }
});

test('every subpath imports from plain ESM, with the same named exports as from CommonJS', async () => {
  const script = `
    import { createRequire } from 'node:module';
    import { appendEvents, OutboxError } from 'kafka-outbox';
    import { startRelay } from 'kafka-outbox/relay';
    import { startProjector, loadAggregate } from 'kafka-outbox/projector';
    import { loadCatalog } from 'kafka-outbox/schemas';
    const require = createRequire(import.meta.url);
    const out = { named: [typeof appendEvents, typeof OutboxError, typeof startRelay, typeof startProjector, typeof loadAggregate, typeof loadCatalog], missing: {} };
    for (const s of ${JSON.stringify(SUBPATHS)}) {
      const esm = await import(s);
      out.missing[s] = Object.keys(require(s)).filter((k) => !(k in esm));
    }
    console.log(JSON.stringify(out));`;
  writeFileSync(path.join(consumer, 'load.mjs'), script);
  const { stdout } = await run(process.execPath, ['load.mjs'], { cwd: consumer });
  const out = JSON.parse(stdout) as { named: string[]; missing: Record<string, string[]> };
  expect(out.named).toEqual(Array(6).fill('function'));
  expect(out.missing).toEqual(Object.fromEntries(SUBPATHS.map((s) => [s, []])));
});

test('TypeScript resolves the types of every subpath, under node16 and the older node resolution', async () => {
  const tsc = path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
  // The expect-error lines fail to compile if a subpath's types were missing (everything would be `any`).
  const body = `
    import { appendEvents, type NewEvent } from 'kafka-outbox';
    import { startRelay, type StartRelayOptions } from 'kafka-outbox/relay';
    import { startProjector } from 'kafka-outbox/projector';
    import { loadCatalog, type SchemaCatalog } from 'kafka-outbox/schemas';
    export const used = [appendEvents, startRelay, startProjector, loadCatalog];
    export type Used = [NewEvent, StartRelayOptions, SchemaCatalog];
    // @ts-expect-error a number is not an options object
    startRelay(42);
    // @ts-expect-error a number is not a directory
    loadCatalog(42);
    // @ts-expect-error appendEvents takes a client and events
    appendEvents();
  `;
  writeFileSync(path.join(consumer, 'uses.ts'), body);
  writeFileSync(path.join(consumer, 'uses-esm.mts'), body);
  const common = ['--noEmit', '--strict', '--skipLibCheck', '--target', 'ES2022', '--typeRoots', path.join(REPO_ROOT, 'node_modules/@types'), '--types', 'node'];
  await Promise.all([
    run(process.execPath, [tsc, ...common, '--module', 'node16', '--moduleResolution', 'node16', 'uses.ts', 'uses-esm.mts'], { cwd: consumer }),
    run(process.execPath, [tsc, ...common, '--module', 'commonjs', '--moduleResolution', 'node', 'uses.ts'], { cwd: consumer }),
  ]);
});

test('the installed bin runs the compiled CLI without tsx', async () => {
  const modules = path.join(consumer, 'node_modules');
  expect(existsSync(path.join(modules, 'tsx'))).toBe(false);
  expect(existsSync(path.join(modules, 'kafka-outbox/cli'))).toBe(false);
  const { stdout } = await run(path.join(modules, '.bin/outbox'), ['--help'], { cwd: consumer, env: { PATH: process.env.PATH, HOME: process.env.HOME } });
  expect(stdout).toMatch(/^Usage: outbox <command>/);
});

test('the declared runtime dependencies are exactly the packages the compiled code loads', () => {
  const root = path.join(consumer, 'node_modules/kafka-outbox/dist');
  const loaded = new Set<string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const full = path.join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.js')) {
        for (const m of readFileSync(full, 'utf8').matchAll(/require\((["'`])([^"'`]+)\1\)/g)) {
          const spec = m[2]!;
          if (spec.startsWith('.') || spec.startsWith('node:')) continue;
          loaded.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!);
        }
      }
    }
  };
  walk(root);
  const builtins = new Set(require('node:module').builtinModules as string[]);
  const external = [...loaded].filter((m) => !builtins.has(m)).sort();
  // Optional peers (loaded only when the user installed them) count as declared.
  const optionalPeers = Object.keys(pkg.peerDependencies ?? {}).filter((p) => pkg.peerDependenciesMeta?.[p]?.optional);
  const declared = [...Object.keys(pkg.dependencies ?? {}), ...optionalPeers].sort();
  expect(external.filter((m) => !declared.includes(m))).toEqual([]);
  expect(Object.keys(pkg.dependencies ?? {}).filter((d) => !external.includes(d))).toEqual([]);
  // Test and development tools stay out of an installed project.
  for (const dev of ['tsx', 'testcontainers', '@kafkajs/confluent-schema-registry', 'jest', 'typescript']) expect(existsSync(path.join(consumer, 'node_modules', dev))).toBe(false);
});
