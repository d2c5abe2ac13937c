import type pg from 'pg';

/** The naive design the relay replaces: remember the highest id seen, read above it (loses late commits). */
export function naivePoller(pool: pg.Pool): { stop(): Promise<void>; seen: Set<string> } {
  const seen = new Set<string>();
  let last = 0n;
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await pool.query<{ id: string; event_id: string }>('SELECT id::text, event_id::text FROM outbox WHERE id > $1 ORDER BY id', [last.toString()]);
      for (const r of rows) {
        seen.add(r.event_id);
        last = BigInt(r.id);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    seen,
    async stop() {
      running = false;
      await loop;
    },
  };
}
