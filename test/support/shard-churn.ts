import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { createKafka } from '../../core/kafka';
import { createLogger } from '../../core/logger';
import { readShardOwners } from '../../relay';
import { checkDelivery, type DeliveryReport } from './delivery-check';
import { uniqueName } from './isolation';
import { killHard, spawnTs, type Child } from './processes';
import { relayConfig, relayEnv } from './relay-env';
import { overlappingPublications, readPublications, type Publication } from './shard-ownership';
import { writeWorkload } from './workload';

export interface ShardChurnOptions {
  db: { url: string; pool: pg.Pool };
  /** Every child started is pushed here (the test file's afterAll kills what is left). */
  children: Child[];
  /** Relay instances kept running (one killed, then one started, per round). */
  instances: number;
  /** Events written, at `ratePerSec`. */
  total: number;
  ratePerSec: number;
  /** At least this many kill-and-add rounds (more while the writers run). */
  minRounds: number;
  /** Between rounds. */
  roundMs: number;
  transactional: boolean;
  /**
   * Before each kill, wait until the instance started last has joined, and kill one that owns shards
   * (for handover times); otherwise any running instance is killed on time, joined or not.
   */
  joinBeforeKill?: boolean;
}

/**
 * Events written once the churn has stopped and the instances left running share the shards again, so
 * each of them publishes: an instance added late in the churn, on a loaded machine, may join only after
 * the main workload has been delivered.
 */
const TAIL_EVENTS = 640;

export interface ShardChurnResult {
  report: DeliveryReport;
  publications: Publication[];
  /** Pairs of publications of one shard by two instances at once (must be empty). */
  overlaps: ReturnType<typeof overlappingPublications>;
  /** Per kill: ms until every shard of the dead instance was owned again. */
  handoversMs: number[];
  /**
   * Per kill, ms from the kill until the last of the dead instance's shards reached each step: locked by
   * a survivor (from its "took shards" line), its producer ready (the same line), its first publication
   * by the new owner started and acknowledged (the batch log; undefined when a shard had no event).
   */
  handoverSteps: Array<{ locked: number; ready: number; published: number | undefined; acked: number | undefined }>;
  /** Per kill, who took the dead instance's shards when (from the survivors' logs), for the output. */
  handoverDetails: string[];
  instancesStarted: number;
  /** The instances running at the end, which shared the shards when the tail was written. */
  finalInstances: string[];
  /** The instances that published once the tail was being written. */
  tailPublishers: string[];
  /** The events written in all (`total` and the tail). */
  written: number;
  /** Progress marks, for the output. */
  phases: string[];
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Sharded relays (OUTBOX_RELAY_SHARDED) as child processes sharing the queue's 32 shards, one killed
 * (-9) and another started every round while writers run; then delivery is verified end to end and
 * each instance's record of its publications (RELAY_BATCH_LOG, test/support/relay-process.ts) is
 * checked for a shard published by two instances at once (a killed one's last publication lasts until
 * its kill).
 */
export async function runShardChurn(options: ShardChurnOptions): Promise<ShardChurnResult> {
  const { db, instances } = options;
  const topic = uniqueName('shards');
  const batchLog = path.join(mkdtempSync(path.join(os.tmpdir(), 'shards-')), 'batches.log');
  const env = relayEnv(db.url, topic, {
    OUTBOX_RELAY_SHARDED: 'true',
    OUTBOX_RELAY_TRANSACTIONAL: String(options.transactional),
    OUTBOX_RELAY_REBALANCE_INTERVAL: '500ms',
    OUTBOX_RELAY_BATCH_SIZE: '200',
    RELAY_BATCH_LOG: batchLog,
    // The survivors' "took shards" lines say when each saw free shards and took them.
    LOG_LEVEL: 'info',
  });
  const t0 = Date.now();
  const phases: string[] = [];
  const phase = (name: string): number => phases.push(`${name} +${((Date.now() - t0) / 1000).toFixed(1)}s`);
  let started = 0;
  const running: Child[] = [];
  const instanceOf = new Map<Child, string>();
  const start = (): Child => {
    const id = `shards-${++started}`;
    const c = spawnTs('test/support/relay-process.ts', { ...env, OUTBOX_INSTANCE_ID: id });
    options.children.push(c);
    running.push(c);
    instanceOf.set(c, id);
    return c;
  };
  const allOwned = async (n: number): Promise<boolean> => {
    const r = await readShardOwners(db.pool, 'outbox');
    return r.unowned.length === 0 && r.owners.length === n && r.owners.every((o) => o.shards.length >= Math.floor(32 / n));
  };

  // Only this run's events are checked (a test file may run several).
  const { rows } = await db.pool.query<{ last: string }>('SELECT coalesce(max(id), 0)::text AS last FROM outbox');
  const since = BigInt(rows[0]!.last);
  for (let i = 0; i < instances; i++) start();
  await Promise.all(running.map((r) => r.waitFor(/relay started/, 60_000)));
  await waitFor(`${instances} instances sharing the 32 shards`, () => allOwned(instances));
  phase(`${instances} up`);

  const controller = new AbortController();
  let written = false;
  const writing = writeWorkload(db.pool, { writers: 4, total: options.total, aggregates: 300, perTx: 4, ratePerSec: options.ratePerSec, signal: controller.signal }).finally(
    () => (written = true),
  );
  const killedAt = new Map<string, number>();
  const handoversMs: number[] = [];
  const kills: Array<{ instance: string; at: number; shards: number[] }> = [];
  try {
    for (let round = 0; round < options.minRounds || !written; round++) {
      await new Promise((r) => setTimeout(r, options.roundMs));
      // joinBeforeKill: the instance started last round has joined (on a loaded machine a process takes
      // seconds to start), else a kill could leave no survivor to take the shards, which measures
      // start-up, not handover; and the victim owns shards (killing one that owns none hands nothing over).
      if (options.joinBeforeKill) await waitFor('every running instance to have joined', async () => (await readShardOwners(db.pool, 'outbox')).owners.length >= running.length);
      const owners = (await readShardOwners(db.pool, 'outbox')).owners;
      const candidates = options.joinBeforeKill ? running.filter((c) => (owners.find((o) => o.instance === instanceOf.get(c))?.shards.length ?? 0) > 0) : [];
      const pick = candidates.length > 0 ? candidates[Math.floor(Math.random() * candidates.length)]! : running[Math.floor(Math.random() * running.length)]!;
      const victim = running.splice(running.indexOf(pick), 1)[0]!;
      const owned = owners.find((o) => o.instance === instanceOf.get(victim))?.shards ?? [];
      await killHard(victim);
      const at = Date.now();
      killedAt.set(instanceOf.get(victim)!, at);
      await waitFor('the survivors to take the dead instance’s shards', async () => {
        const r = await readShardOwners(db.pool, 'outbox');
        return owned.every((s) => !r.unowned.includes(s));
      });
      handoversMs.push(Date.now() - at);
      kills.push({ instance: instanceOf.get(victim)!, at, shards: owned });
      start();
    }
    const count = await writing;
    if (count !== options.total) throw new Error(`wrote ${count} of ${options.total} events`);
  } catch (err) {
    controller.abort();
    await writing.catch(() => undefined);
    throw err;
  }
  phase('written');
  await Promise.all(running.map((r) => r.waitFor(/relay started/, 60_000)));
  await waitFor(`${running.length} instances sharing the 32 shards again`, () => allOwned(running.length));
  phase('all owned');
  const tailStart = Date.now();
  const tailWritten = await writeWorkload(db.pool, { writers: 4, total: TAIL_EVENTS, aggregates: 300, perTx: 4 });
  phase('tail written');
  const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn' });
  const report = await checkDelivery(db.pool, createKafka(relayConfig(db.url, topic).kafka, logger), [topic], { timeoutMs: 90_000, where: `id > ${since}` });
  phase('checked');
  for (const c of running) await killHard(c);
  const publications = readPublications(batchLog);
  const takes = [...instanceOf].flatMap(([c, instance]) => shardTakes(instance, c.output()));
  const handoverDetails = kills.map((k, i) => {
    const parts = takes
      .filter((t) => lockedInHandover(t, k.at, handoversMs[i]!) && t.shards.some((s) => k.shards.includes(s)))
      .map(
        (t) =>
          `${t.instance} saw +${t.seenAt - k.at} locked +${t.lockedAt - k.at} ready +${t.readyAt - k.at} (connect and InitProducerId ${t.initMs ?? '-'} ms) [${t.shards.filter((s) => k.shards.includes(s)).join(',')}]`,
      );
    return `${k.instance} killed, owned again after ${handoversMs[i]} ms: ${parts.join('; ') || 'no take logged'}`;
  });
  // A kill late in the churn may find its shards with nothing pending until the tail is written: their
  // publications of the tail say when the tail was written, not how long the handover took.
  const beforeTail = publications.filter((p) => p.start < tailStart);
  const handoverSteps = kills.map((k, i) => handoverStepsOf(k, handoversMs[i]!, takes, beforeTail));
  handoverSteps.forEach((h, i) => {
    handoverDetails[i] += ` | last shard locked +${h.locked} ready +${h.ready} first publish +${h.published ?? '-'} acked +${h.acked ?? '-'}`;
  });
  return {
    report,
    publications,
    overlaps: overlappingPublications(publications, killedAt),
    handoversMs,
    handoverSteps,
    handoverDetails,
    instancesStarted: started,
    finalInstances: running.map((c) => instanceOf.get(c)!),
    tailPublishers: [...new Set(publications.filter((p) => p.start >= tailStart).map((p) => p.instance))].sort(),
    written: options.total + tailWritten,
    phases,
  };
}

/**
 * A take belongs to the handover of a kill at `killedAt` when it locked between the kill and a second after
 * the lock table showed the shards owned again (a taker killed right after may have lost its log line, and a
 * later kill's take of the same shard is not this handover).
 */
function lockedInHandover(take: { lockedAt: number }, killedAt: number, ownedAfterMs: number): boolean {
  return take.lockedAt >= killedAt && take.lockedAt <= killedAt + ownedAfterMs + 1000;
}

/** The handover steps of one kill: for each step, the ms until the last of the dead instance's shards reached it. */
function handoverStepsOf(
  kill: { instance: string; at: number; shards: number[] },
  ownedAfterMs: number,
  takes: ReturnType<typeof shardTakes>,
  publications: Publication[],
): ShardChurnResult['handoverSteps'][number] {
  const worst = (values: Array<number | undefined>): number | undefined => {
    const known = values.filter((v): v is number => v !== undefined);
    return known.length === 0 ? undefined : Math.max(...known);
  };
  const perShard = kill.shards.map((s) => {
    // Its first take in this handover (the takes are listed instance by instance, not in time order).
    const take = takes.filter((t) => lockedInHandover(t, kill.at, ownedAfterMs) && t.shards.includes(s)).sort((a, b) => a.lockedAt - b.lockedAt)[0];
    const first = publications.filter((p) => p.instance !== kill.instance && p.start >= kill.at && p.shards.includes(s)).sort((a, b) => a.start - b.start)[0];
    return {
      locked: take ? take.lockedAt - kill.at : ownedAfterMs,
      ready: take ? take.readyAt - kill.at : undefined,
      published: first ? first.start - kill.at : undefined,
      acked: first?.end !== undefined ? first.end - kill.at : undefined,
    };
  });
  return {
    locked: worst(perShard.map((p) => p.locked)) ?? ownedAfterMs,
    ready: worst(perShard.map((p) => p.ready)) ?? ownedAfterMs,
    published: worst(perShard.map((p) => p.published)),
    acked: worst(perShard.map((p) => p.acked)),
  };
}

/** Every "took shards" line of a relay's log: when it saw the free shards, locked them, and had their producers. */
function shardTakes(
  instance: string,
  output: string,
): Array<{ instance: string; shards: number[]; seenAt: number; lockedAt: number; readyAt: number; initMs: number | undefined }> {
  const takes = [];
  // Each shard producer's "Kafka producer initialised" line (kafka-sink.ts): ms of its connect and InitProducerId.
  const inits: Array<{ shard: number; time: number; ms: number }> = [];
  const lines: Array<{ time: number; acquired?: number[]; lockMs?: number; destinationMs?: number; transactionalId?: string; ms?: number }> = [];
  for (const line of output.split('\n')) {
    if (!line.includes('"acquired"') && !line.includes('"transactionalId"')) continue;
    try {
      lines.push(JSON.parse(line) as (typeof lines)[number]);
    } catch {
      // not a log line
    }
  }
  for (const l of lines) {
    const shard = /\.shard-(\d+)$/.exec(l.transactionalId ?? '')?.[1];
    if (shard !== undefined && l.ms !== undefined) inits.push({ shard: Number(shard), time: l.time, ms: l.ms });
  }
  for (const l of lines) {
    if (!l.acquired) continue;
    const lockedAt = l.time - (l.destinationMs ?? 0);
    const own = inits.filter((i) => l.acquired!.includes(i.shard) && i.time >= lockedAt && i.time <= l.time).map((i) => i.ms);
    takes.push({ instance, shards: l.acquired, seenAt: lockedAt - (l.lockMs ?? 0), lockedAt, readyAt: l.time, initMs: own.length > 0 ? Math.max(...own) : undefined });
  }
  return takes;
}

/** "p50 X ms, max Y ms" of each handover step over the kills, for the output. */
export function handoverSummary(r: Pick<ShardChurnResult, 'handoverSteps'>): string {
  const stat = (values: Array<number | undefined>): string => {
    const known = values.filter((v): v is number => v !== undefined).sort((a, b) => a - b);
    return known.length === 0 ? 'none' : `p50 ${known[Math.floor(known.length / 2)]} ms, max ${known.at(-1)} ms`;
  };
  const steps = r.handoverSteps;
  return (
    `kill → last shard locked ${stat(steps.map((s) => s.locked))}; → producer ready ${stat(steps.map((s) => s.ready))}; ` +
    `→ first publish ${stat(steps.map((s) => s.published))}; → first ack ${stat(steps.map((s) => s.acked))}`
  );
}
