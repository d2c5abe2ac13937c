import { AssignerProtocol } from 'kafkajs';
import { waitFor } from '../projector/support';
import { useTestDatabase, uniqueName } from '../support/isolation';
import { killHard, stopGracefully, type Child } from '../support/processes';
import { writeWorkload } from '../support/workload';
import { appPool, inProcessRelay, kafkaOf, projectorAdminPort, scenarioEnv, seedUsers, spawnProjector, verifyAndPrint, ZERO } from './support';

// Proof-suite scenario "projector scale-out": three projector processes in one consumer group (per
// projection) over a 12-partition topic, under a steady write load through the relay. One is SIGKILLed
// while it is applying (its applied counter moving, lag on its partitions), then a new one is started.
// Exactly-once is checked with the ledger verifier (0 double-applied, 0 not applied); the rebalance times
// are printed; each live instance's /metrics reports lag for exactly the partitions the group coordinator
// assigned to it (none left over from before a rebalance).
const db = useTestDatabase({ poolSize: 10 });
const children: Child[] = [];
afterAll(async () => {
  for (const c of children) await killHard(c);
});

const PARTITIONS = 12;
const LAG = 'outbox_projector_consumer_lag';
const APPLIED = 'outbox_projector_applied_events_total';

interface Scrape {
  /** Per projection, partitions of the scenario's topic with a lag series, and their lag. */
  lag: Map<string, Map<number, number>>;
  applied: number;
}

function labels(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1]!, m[2]!]));
}

async function scrape(port: number, topic: string): Promise<Scrape> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  const lag = new Map<string, Map<number, number>>();
  let applied = 0;
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m) continue;
    const l = labels(m[2]!);
    if (m[1] === LAG && l.topic === topic) {
      const byPartition = lag.get(l.projection!) ?? new Map<number, number>();
      byPartition.set(Number(l.partition), Number(m[3]));
      lag.set(l.projection!, byPartition);
    }
    if (m[1] === APPLIED) applied += Number(m[3]);
  }
  return { lag, applied };
}

const key = (parts: Iterable<number>): string => JSON.stringify([...parts].sort((a, b) => a - b));

test('three projectors over 12 partitions, one killed -9 mid-batch and one added under load: 0 double-applied, 0 missed, lag per instance', async () => {
  const topic = uniqueName('pscale');
  const env = scenarioEnv(db.url, topic, { OUTBOX_TOPIC_PARTITIONS: String(PARTITIONS), OUTBOX_PROJECTOR_BATCH_SIZE: '100', LOG_LEVEL: 'error' });
  const aggregates = 600;
  const writers = appPool(db.url);
  await seedUsers(writers, aggregates);
  const relay = inProcessRelay(env);
  const group = uniqueName('g');
  const kafka = kafkaOf(env);
  const admin = kafka.admin();
  await admin.connect();
  const stopWriting = new AbortController();
  try {
    // The load runs until the new instance has joined and applied (about 300 ev/s, over all 12 partitions).
    const writing = writeWorkload(writers, { writers: 3, total: 1_000_000, aggregates, perTx: 5, ratePerSec: 300, signal: stopWriting.signal });

    const spawn = async (): Promise<{ child: Child; port: number }> => {
      const child = await spawnProjector(env, [topic], group, children, { adminPort: 0 });
      return { child, port: projectorAdminPort(child) };
    };
    const instances = [await spawn(), await spawn(), await spawn()];
    const projections = await waitFor('the projections to report lag', async () => {
      const names = new Set<string>();
      for (const i of instances) for (const p of (await scrape(i.port, topic)).lag.keys()) names.add(p);
      return names.size > 0 && [...names];
    });

    /**
     * Wait until the coordinator's assignment (per projection's group) is exactly what the live instances'
     * /metrics report: one lag series per assigned partition, no partition twice, all 12 covered.
     */
    const lagMatchesAssignment = async (live: Array<{ port: number }>, what: string): Promise<Array<Record<string, number[]>>> =>
      waitFor(
        what,
        async () => {
          const groups = await admin.describeGroups(projections.map((p) => `${group}.${p}`));
          const scrapes = await Promise.all(live.map((i) => scrape(i.port, topic)));
          const perInstance: Array<Record<string, number[]>> = live.map(() => ({}));
          for (const [g, p] of projections.entries()) {
            const desc = groups.groups.find((x) => x.groupId === `${group}.${p}`);
            if (desc?.state !== 'Stable' || desc.members.length !== live.length) return false;
            const assigned = desc.members.map((m) => key(AssignerProtocol.MemberAssignment.decode(m.memberAssignment)?.assignment[topic] ?? [])).sort();
            const reported = scrapes.map((s) => key(s.lag.get(p)?.keys() ?? [])).sort();
            if (JSON.stringify(assigned) !== JSON.stringify(reported)) return false;
            const all = scrapes.flatMap((s) => [...(s.lag.get(p)?.keys() ?? [])]);
            if (new Set(all).size !== PARTITIONS || all.length !== PARTITIONS) return false;
            if (scrapes.some((s) => (s.lag.get(p)?.size ?? 0) === 0)) return false;
            scrapes.forEach((s, i) => (perInstance[i]![projections[g]!] = [...(s.lag.get(p)?.keys() ?? [])].sort((a, b) => a - b)));
          }
          return perInstance;
        },
        120_000,
        250,
      );
    const beforeKill = await lagMatchesAssignment(instances, 'three instances reporting lag for their assigned partitions');

    // Per projection and partition, the checkpoint (last offset applied) of the live generation.
    const checkpoints = async (): Promise<Map<string, bigint>> => {
      const { rows } = await db.pool.query<{ projection: string; partition: number; last_offset: string }>(
        `SELECT f.projection, f.partition, f.last_offset FROM projector_offsets f
           JOIN projector_projections p ON p.projection = f.projection AND p.live_generation = f.generation
          WHERE f.topic = $1`,
        [topic],
      );
      return new Map(rows.map((r) => [`${r.projection}/${r.partition}`, BigInt(r.last_offset)]));
    };

    // Kill -9 the first instance while it is applying: its applied counter moved since the last scrape
    // and its partitions still have lag.
    const victim = instances[0]!;
    let previous = (await scrape(victim.port, topic)).applied;
    const atKill = await waitFor(
      'the victim to be applying with lag',
      async () => {
        const s = await scrape(victim.port, topic);
        const moving = s.applied > previous;
        previous = s.applied;
        const lag = [...s.lag.values()].flatMap((m) => [...m.values()]).reduce((a, b) => a + b, 0);
        return moving && lag > 0 && { applied: s.applied, lag };
      },
      120_000,
      20,
    );
    await killHard(victim.child);
    const killedAt = Date.now();
    const checkpointsAtKill = await checkpoints();
    const survivors = instances.slice(1);

    // Every partition of every projection applies again (its checkpoint moves past where it was at the kill).
    await waitFor(
      'every partition to be applied again after the kill',
      async () => {
        const now = await checkpoints();
        return projections.every((p) => Array.from({ length: PARTITIONS }, (_, n) => `${p}/${n}`).every((k) => (now.get(k) ?? -1n) > (checkpointsAtKill.get(k) ?? -1n)));
      },
      180_000,
      100,
    );
    const killToAllAppliedMs = Date.now() - killedAt;
    await lagMatchesAssignment(survivors, "the two survivors reporting lag for all partitions, the victim's included");
    const killToMetricsMs = Date.now() - killedAt;

    // Add a new instance; it must take a share and apply.
    const addedAt = Date.now();
    const added = await spawn();
    const addToReadyMs = Date.now() - addedAt;
    await waitFor('the new instance to apply', async () => (await scrape(added.port, topic)).applied > 0, 180_000, 50);
    const addToApplyingMs = Date.now() - addedAt;
    const live = [...survivors, added];
    const afterAdd = await lagMatchesAssignment(live, 'three instances (one new) reporting lag for their assigned partitions');
    const addToMetricsMs = Date.now() - addedAt;

    stopWriting.abort();
    const written = await writing;
    const report = await verifyAndPrint(
      'projector-scale-out',
      db.pool,
      kafka,
      [topic],
      { projections: true },
      {
        partitions: PARTITIONS,
        projections,
        victim_at_kill: atKill,
        kill_to_all_partitions_applied_ms: killToAllAppliedMs,
        kill_to_survivor_metrics_ms: killToMetricsMs,
        add_to_ready_ms: addToReadyMs,
        add_to_applying_ms: addToApplyingMs,
        add_to_metrics_ms: addToMetricsMs,
        assignment_before_kill: beforeKill,
        assignment_after_add: afterAdd,
      },
    );
    for (const i of live) expect(await stopGracefully(i.child)).toBe(0);
    // The relay is never killed: not even a duplicate on the topic; the kill must not double-apply or miss.
    expect(report).toMatchObject({ committed: written + aggregates, ...ZERO });
    // Every live instance held partitions of every projection, before the kill and after the add.
    for (const a of [...beforeKill, ...afterAdd]) for (const p of projections) expect(a[p]!.length).toBeGreaterThan(0);
  } finally {
    stopWriting.abort();
    await admin.disconnect();
    await relay.stop();
    await writers.end();
  }
}, 600_000);
