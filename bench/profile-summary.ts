/**
 * Where a Node process's time went, from a V8 CPU profile (`node --cpu-prof`): self time per frame and
 * per group — PostgreSQL client (pg, pg-protocol, row parsing), Avro encoding, kafkajs (record batches,
 * CRC, protocol), relay code, GC, idle (waiting on I/O). Built-in frames and Node's own modules
 * (JSON.parse, Buffer allocation and copies) count for the group of the script that called them; what
 * has no script caller (socket reads, stream plumbing) is "Node.js I/O".
 *
 *   npx tsx bench/profile-summary.ts <file.cpuprofile>
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  totalMs: number;
  groups: Array<{ group: string; ms: number; percent: number }>;
  /** `group`: the groups whose code called the frame, largest share first (a Buffer copy serves several) */
  top: Array<{ frame: string; group: string; ms: number; percent: number }>;
}

function groupOfUrl(url: string, fn: string): string | null {
  if (fn === '(idle)') return 'idle (waiting on PostgreSQL / the broker)';
  if (fn === '(garbage collector)') return 'GC';
  if (fn === '(program)') return 'V8 / native (program)';
  // built-ins and Node's own modules (Buffer.alloc, copies, utf8 writes): counted for the script that called them
  if (url === '' || url.startsWith('node:')) return null;
  if (/node_modules\/(pg|pg-protocol|pg-types|pg-pool|postgres-[a-z]+|pgpass)\//.test(url)) return 'PostgreSQL client (pg: protocol, row parsing)';
  if (/node_modules\/kafkajs\/src\/protocol\/(recordBatch\/|encoder\.js)/.test(url)) return 'kafkajs record batch building (Encoder buffer growth and copies, records, CRC32C)';
  if (/node_modules\/kafkajs\//.test(url)) return 'kafkajs (producer, produce request, network)';
  if (/node_modules\/(avsc|@kafkajs\/confluent-schema-registry)\//.test(url) || /\/schemas\//.test(url)) return 'Avro encoding (avsc, schemas/)';
  if (/\/relay\//.test(url)) return 'relay code (claim, encode-batch, publish-batch, mark)';
  if (/node_modules\/pino/.test(url)) return 'logging (pino)';
  if (/node_modules\/(tsx|esbuild|get-tsconfig)/.test(url)) return 'start-up (tsx loader)';
  return 'other';
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) return url.slice(nm + 'node_modules/'.length);
  const root = path.resolve(__dirname, '..');
  return url.replace(`file://${root}/`, '').replace(`${root}/`, '');
}

export function summarizeProfile(profile: CpuProfile, topN = 25): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const groupCache = new Map<number, string>();
  const groupOf = (id: number): string => {
    const cached = groupCache.get(id);
    if (cached) return cached;
    let cur: number | undefined = id;
    let g: string | null = null;
    while (cur !== undefined && g === null) {
      const n = byId.get(cur)!;
      g = groupOfUrl(n.callFrame.url, n.callFrame.functionName);
      cur = parent.get(cur);
    }
    const result = g ?? 'Node.js I/O (sockets, streams, timers; no script caller)';
    groupCache.set(id, result);
    return result;
  };
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const groups = new Map<string, number>();
  const frames = new Map<string, { groups: Map<string, number>; us: number }>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const g = groupOf(id);
    groups.set(g, (groups.get(g) ?? 0) + us);
    const f = n.callFrame;
    const key = f.url === '' ? `${f.functionName || '(anonymous)'} [built-in]` : `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
    const e = frames.get(key) ?? { groups: new Map<string, number>(), us: 0 };
    e.us += us;
    e.groups.set(g, (e.groups.get(g) ?? 0) + us);
    frames.set(key, e);
  }
  const pct = (us: number): number => Number(((us / total) * 100).toFixed(1));
  return {
    totalMs: Math.round(total / 1000),
    groups: [...groups.entries()].sort((a, b) => b[1] - a[1]).map(([group, us]) => ({ group, ms: Math.round(us / 1000), percent: pct(us) })),
    top: [...frames.entries()]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, topN)
      .map(([frame, e]) => ({
        frame,
        group: [...e.groups.entries()]
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([g, us]) => (e.groups.size > 1 ? `${g} ${Math.round((us / e.us) * 100)}%` : g))
          .join('; '),
        ms: Math.round(e.us / 1000),
        percent: pct(e.us),
      })),
  };
}

export function renderProfile(s: ProfileSummary): string {
  const lines = [`CPU profile, ${s.totalMs.toLocaleString('en-US')} ms sampled — by group (self time):`];
  for (const g of s.groups) lines.push(`  ${String(g.percent).padStart(5)}%  ${String(g.ms).padStart(7)} ms  ${g.group}`);
  lines.push('top frames by self time:');
  for (const f of s.top) lines.push(`  ${String(f.percent).padStart(5)}%  ${String(f.ms).padStart(7)} ms  ${f.frame}  [${f.group}]`);
  return lines.join('\n');
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: npx tsx bench/profile-summary.ts <file.cpuprofile>\n');
    process.exit(2);
  }
  process.stdout.write(`${renderProfile(summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile))}\n`);
}
