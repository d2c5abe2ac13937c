/** Shared pieces of the bench scripts: a throw-away migrated database, the machine, results, percentiles. */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { DEFAULT_SCHEMA, defaultProjectorSchema } from '../core/config';
import { silentLogger } from '../core/logger';
import { migrate } from '../infra/migrate';

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/**
 * `url` whose connections find the default outbox and projector schemas unqualified (the bench SQL
 * names `outbox`, `audit_log` without a schema, as a service with this search_path does).
 */
export function withSearchPath(url: string): string {
  const u = new URL(url);
  u.searchParams.delete('options');
  const rest = u.search.replace(/^\?/, '');
  const path = [DEFAULT_SCHEMA, defaultProjectorSchema(DEFAULT_SCHEMA), 'public'].join(',');
  u.search = `?${rest ? `${rest}&` : ''}options=${encodeURIComponent(`-c search_path=${path}`)}`;
  return u.toString();
}

/** Create a migrated database of the bench's own; `drop()` removes it. */
export async function benchDatabase(baseUrl: string, prefix: string): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: withDatabase(baseUrl, 'postgres') });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = withSearchPath(withDatabase(baseUrl, name));
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  await migrate(c, { schema: DEFAULT_SCHEMA, logger: silentLogger() });
  await c.end();
  return {
    name,
    url,
    async drop() {
      const a = new pg.Client({ connectionString: withDatabase(baseUrl, 'postgres') });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await a.end();
    },
  };
}

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      .split('\n')[0]!
      .trim();
  } catch {
    return 'unknown';
  }
}

/** The machine a figure was measured on. */
export function machine(): Record<string, unknown> {
  return {
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    postgres: version('psql', ['--version']),
    java: version('java', ['-version']),
  };
}

export function writeResult(name: string, result: unknown): string {
  const dir = path.join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function table(rows: Array<Record<string, string | number>>): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0]!);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(width[i]!)).join('  ');
  return [line(cols), line(width.map((w) => '-'.repeat(w))), ...rows.map((r) => line(cols.map((c) => String(r[c] ?? ''))))].join('\n');
}

export function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : def;
  return Number.isFinite(v) && v > 0 ? v : def;
}
