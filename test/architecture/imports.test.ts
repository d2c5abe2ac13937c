import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

// The import rule of ARCHITECTURE.md is enforced by ESLint (`npm run lint`, part of `npm test`) from the
// map MAY_IMPORT in eslint.config.mjs. This shows the rule firing on the imports it forbids and staying
// quiet on the ones it allows, and checks that the folders import one another without a cycle: in the map,
// and in the tree (every import, `import type`, `typeof import()` and `require()` included).
const ROOT = path.join(__dirname, '..', '..');

/**
 * The import-rule messages ESLint gives for each `code` as if it were the file `file` (not written anywhere).
 * All cases go to one ESLint in one child process: each ESLint start costs seconds (it builds the typed
 * program), so a child per case made this the slowest unit test.
 */
function problemsOf(cases: Array<{ file: string; code: string }>): string[][] {
  const script = `
    import { ESLint } from 'eslint';
    const cases = JSON.parse(process.env.LINT_CASES);
    const eslint = new ESLint({ cwd: process.cwd() });
    const out = [];
    for (const c of cases) {
      const [result] = await eslint.lintText(c.code, { filePath: c.file });
      out.push((result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message));
    }
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, LINT_CASES: JSON.stringify(cases.map((c) => ({ ...c, file: path.join(ROOT, c.file) }))) },
  });
  if (r.status !== 0) throw new Error(`eslint failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as string[][];
}

type Graph = Record<string, string[]>;

let rule: Graph | undefined;
/** The MAY_IMPORT map of eslint.config.mjs (an ES module, read once by a child node). */
function mayImport(): Graph {
  if (rule) return rule;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', "const m = await import('./eslint.config.mjs'); console.log(JSON.stringify(m.MAY_IMPORT));"], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`reading eslint.config.mjs failed: ${r.stderr}`);
  rule = JSON.parse(r.stdout) as Graph;
  return rule;
}

/** Every cycle of a graph, each once, as the path from its smallest member back to it: ['cli', 'core', 'cli']. */
function cycles(graph: Graph): string[][] {
  const found: string[][] = [];
  const walk = (start: string, node: string, trail: string[]): void => {
    for (const next of graph[node] ?? []) {
      if (next === start) found.push([...trail, start]);
      // Only through members after the start: each cycle is found once, from its smallest member.
      else if (next > start && !trail.includes(next)) walk(start, next, [...trail, next]);
    }
  };
  for (const start of Object.keys(graph).sort()) walk(start, start, [start]);
  return found;
}

const NOT_SOURCE = new Set(['node_modules', 'dist', 'test', 'bench', 'examples', 'docs', 'bin', 'coverage', 'tools']);

/** The .ts files under a folder. */
function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return name === 'node_modules' ? [] : tsFiles(file);
    return name.endsWith('.ts') ? [file] : [];
  });
}

/** The top-level source folders (those with .ts files) and, for each, the other source folders its files import. */
function importsInTree(): Graph {
  const candidates = readdirSync(ROOT).filter((d) => !d.startsWith('.') && !NOT_SOURCE.has(d) && statSync(path.join(ROOT, d)).isDirectory());
  const files = new Map(candidates.map((f) => [f, tsFiles(path.join(ROOT, f))] as const));
  const folders = candidates.filter((f) => files.get(f)!.length > 0);
  const graph: Record<string, Set<string>> = Object.fromEntries(folders.map((f) => [f, new Set<string>()]));
  for (const from of folders) {
    for (const file of files.get(from)!) {
      for (const { fileName } of ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles) {
        if (!fileName.startsWith('.')) continue;
        const to = path.relative(ROOT, path.resolve(path.dirname(file), fileName)).split(path.sep)[0]!;
        if (to !== from && folders.includes(to)) graph[from]!.add(to);
      }
    }
  }
  return Object.fromEntries(Object.entries(graph).map(([f, to]) => [f, [...to].sort()]));
}

test('relay/ and projector/ never import each other; core/ and event/ import nothing above them', () => {
  const [relayToProjector, projectorToRelay, coreUp, coreTypeUp, consoleToCli, allowed] = problemsOf([
    { file: 'relay/new-part.ts', code: "import { startProjector } from '../projector';\nexport const x = startProjector;\n" },
    { file: 'projector/projections/new.ts', code: "import { claimBatch } from '../../relay/claim-batch';\nexport const x = claimBatch;\n" },
    { file: 'core/new.ts', code: "import { computeHash } from '../event/hash-chain';\nimport { appendEvents } from '../writer';\nexport const x = [computeHash, appendEvents];\n" },
    // A type import counts: core/ names no type of a folder above it.
    { file: 'core/new.ts', code: "import type { Entry } from '../cli/framework';\nexport type X = Entry;\n" },
    { file: 'console/new.ts', code: "import { loadDomain } from '../cli/domain';\nexport const x = loadDomain;\n" },
    // Allowed: the neutral modules.
    {
      file: 'relay/new-part.ts',
      code: "import { computeHash } from '../event/hash-chain';\nimport { isRetriable } from '../core/retry';\nexport const x = [computeHash, isRetriable];\n",
    },
  ]);
  expect(relayToProjector).toEqual([expect.stringContaining('relay/ must not import projector/ (ARCHITECTURE.md: what each folder may import)')]);
  expect(projectorToRelay).toEqual([expect.stringContaining('projector/ must not import relay/ (ARCHITECTURE.md: what each folder may import)')]);
  expect(coreUp).toHaveLength(2);
  expect(coreTypeUp).toEqual([expect.stringContaining('core/ must not import cli/')]);
  expect(consoleToCli).toEqual([expect.stringContaining('console/ must not import cli/')]);
  expect(allowed).toEqual([]);
}, 120_000);

test('the cycle check finds a cycle between folders', () => {
  expect(cycles({ core: ['cli'], cli: ['core', 'relay'], relay: ['core'] })).toEqual([
    ['cli', 'core', 'cli'],
    ['cli', 'relay', 'core', 'cli'],
  ]);
  expect(cycles({ cli: ['console', 'core'], console: ['core'], core: [] })).toEqual([]);
});

test('the folders may import one another without a cycle, and the rule names every source folder', () => {
  expect(cycles(mayImport())).toEqual([]);
  expect(Object.keys(importsInTree()).sort()).toEqual(Object.keys(mayImport()).sort());
}, 60_000);

test('the folders in the tree import one another without a cycle, and only as the rule allows (require() included)', () => {
  const tree = importsInTree();
  expect(cycles(tree)).toEqual([]);
  const outside = Object.entries(tree).flatMap(([from, to]) => to.filter((t) => !(mayImport()[from] ?? []).includes(t)).map((t) => `${from} -> ${t}`));
  expect(outside).toEqual([]);
}, 60_000);

/** The lines (1-based) where `code` calls require(); `require.main` and `require.resolve` are no such call. */
function requireCalls(code: string): number[] {
  const source = ts.createSourceFile('file.ts', code, ts.ScriptTarget.Latest, true);
  const lines: number[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'require') {
      lines.push(source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return lines;
}

test('cli/ imports statically: only cli/lazy.ts, its one lazy loader, calls require()', () => {
  expect(
    requireCalls(
      "const a = require('x');\nif (require.main === module) void require.resolve('y');\nfunction f() {\n  return (require('../relay/index') as typeof import('../relay/index')).startRelay;\n}\n",
    ),
  ).toEqual([1, 4]);
  const loader = path.join(ROOT, 'cli', 'lazy.ts');
  expect(requireCalls(readFileSync(loader, 'utf8')).length).toBeGreaterThan(0);
  const elsewhere = tsFiles(path.join(ROOT, 'cli'))
    .filter((file) => file !== loader)
    .flatMap((file) => requireCalls(readFileSync(file, 'utf8')).map((line) => `${path.relative(ROOT, file)}:${line}`));
  expect(elsewhere).toEqual([]);
});
