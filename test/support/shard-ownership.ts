import { readFileSync } from 'node:fs';

/** One publication by a relay instance, from RELAY_BATCH_LOG (test/support/relay-process.ts). */
export interface Publication {
  instance: string;
  start: number;
  /** When it was acknowledged; undefined when the instance was killed first (then until its kill). */
  end: number | undefined;
  shards: number[];
}

export function readPublications(file: string): Publication[] {
  const byKey = new Map<string, Publication>();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  for (const line of text.split('\n')) {
    const [kind, instance, batch, ms, shards] = line.split(' ');
    if (!kind || !instance || !batch || !ms) continue;
    const key = `${instance} ${batch}`;
    if (kind === 'start') byKey.set(key, { instance, start: Number(ms), end: undefined, shards: (shards ?? '').split(',').filter(Boolean).map(Number) });
    else if (kind === 'end') {
      const p = byKey.get(key);
      if (p) p.end = Number(ms);
    }
  }
  return [...byKey.values()];
}

/**
 * Pairs of publications of one shard by two instances whose intervals overlap: a publication lasts
 * from its start to its acknowledgement, or, when its instance was killed first, to the kill.
 */
export function overlappingPublications(publications: Publication[], killedAt: ReadonlyMap<string, number>): Array<{ shard: number; a: Publication; b: Publication }> {
  const byShard = new Map<number, Publication[]>();
  for (const p of publications) for (const s of p.shards) byShard.set(s, [...(byShard.get(s) ?? []), p]);
  const end = (p: Publication): number => p.end ?? killedAt.get(p.instance) ?? Number.POSITIVE_INFINITY;
  const overlaps: Array<{ shard: number; a: Publication; b: Publication }> = [];
  for (const [shard, list] of byShard) {
    list.sort((x, y) => x.start - y.start);
    let open: Publication | undefined;
    for (const p of list) {
      if (open && open.instance !== p.instance && p.start < end(open)) overlaps.push({ shard, a: open, b: p });
      if (!open || end(p) > end(open)) open = p;
    }
  }
  return overlaps;
}
