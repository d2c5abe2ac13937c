/**
 * `npm run bench:peers`: kafka-outbox side by side with Debezium (Kafka Connect + the PostgreSQL
 * connector + the Outbox Event Router + Apicurio's Avro converter) on the same machine, the same
 * PostgreSQL cluster and the same workload, with Kafka's own ProducerPerformance as the raw broker
 * ceiling, all in one run. Prints one table and writes bench/results/peers-<date>.json (and
 * peers-latest.json).
 *
 *   npm run bench:peers [-- --backlog 200000 --rates 1000,5000,10000 --seconds 15 --ceiling-records 500000
 *                          --debezium-poll-ms N --json --quick --out <file.json>]
 *   npx tsx bench/peers/run.ts --render bench/results/peers-latest.json
 *
 * - PostgreSQL: a private cluster started here (initdb/pg_ctl, its own port and data directory,
 *   wal_level=logical), removed at the end, also on failure or Ctrl-C. Both systems use it, each with its
 *   own database and outbox table. The shared server is not used or reconfigured.
 * - Kafka and the registry: the shared stack (.stack/env or the environment); every topic is the run's
 *   own (LogAppendTime, 6 partitions) and deleted at the end.
 * - kafka-outbox: `node bin/outbox.js relay` (the command users run) as a child process.
 * - Debezium: a standalone Kafka Connect worker (Kafka's launch defaults: heap 256 MiB..2 GiB, G1) as a
 *   child process; jars from Maven Central on first use (infra/connect/install.sh), cached under .stack/.
 *
 * Figures per system: backlog drain (events written while the system was down, then started), time to
 * the first event after a cold start, commit → broker append (LogAppendTime) and commit → consumer
 * p50/p99 at fixed rates (higher rates are skipped once a system cannot keep up), CPU seconds and peak
 * RSS of the relay process / the Connect worker per 100k events, read from /proc.
 * `--quick`: a smoke run of every part (3,000 events, one rate) for the test suite.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { loadConfig, readEnvironment } from '../../core/config';
import { silentLogger } from '../../core/logger';
import { migrate } from '../../infra/migrate';
import { freePort } from './ports';
import { percentile, table, withSearchPath, writeResult } from '../support';
import { DEFAULT_SCHEMA } from '../../core/config';
import { DEBEZIUM_OUTBOX_DDL, installConnect, startConnectWorker, waitSlotActive, type ConnectInstall, type ConnectorOptions } from './connect-worker';
import { postmasterPid, removeStaleClusters, startPrivateCluster, type PrivateCluster } from './postgres-cluster';
import { brokerPid, cpuMeter, cpuSeconds, peakRssMiB, per100k, processTree, sampleRss } from './proc-stats';
import { producerPerformance, type ProducerPerfResult } from './producer-perf';
import { arrivals, pacedLoad, topicRecords, writeBacklog, type Arrival, type System } from './workload';

const ROOT = path.resolve(__dirname, '../..');
const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
function num(name: string, def: number): number {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : def;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number, got ${argv[i + 1]}`);
  return v;
}
function list(name: string, def: number[]): number[] {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = (argv[i + 1] ?? '').split(',').map(Number);
  if (v.length === 0 || v.some((x) => !Number.isFinite(x) || x <= 0)) throw new Error(`--${name} must be a comma-separated list of positive numbers`);
  return v;
}
const BACKLOG = num('backlog', quick ? 3_000 : 200_000);
const RATES = list('rates', quick ? [1_000] : [1_000, 5_000, 10_000]);
const SECONDS = num('seconds', quick ? 3 : 15);
const CEILING_RECORDS = num('ceiling-records', quick ? 5_000 : 500_000);
const DEBEZIUM_POLL_MS = argv.includes('--debezium-poll-ms') ? num('debezium-poll-ms', 500) : undefined;
const FORMAT: 'avro' | 'json' = argv.includes('--json') ? 'json' : 'avro';
/** How long events may still arrive after a paced load ended before they count as missing. */
const ARRIVAL_WAIT_MS = quick ? 10_000 : 20_000;
const PARTITIONS = 6;

// ---------------------------------------------------------------------------------------------------
// cleanup: everything started is stopped and removed, on success, on failure and on Ctrl-C

const cleanups: Array<{ name: string; fn: () => Promise<unknown> }> = [];
const onCleanup = (name: string, fn: () => Promise<unknown>): void => void cleanups.push({ name, fn });
let cleaning: Promise<void> | null = null;
/** Aborts child processes the bench waits for (ProducerPerformance) when it is stopped. */
const stopping = new AbortController();
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    stopping.abort();
    while (cleanups.length > 0) {
      const c = cleanups.pop()!;
      try {
        await c.fn();
      } catch (err) {
        process.stderr.write(`[peers] cleanup "${c.name}" failed: ${String(err)}\n`);
      }
    }
  })();
  return cleaning;
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n[peers] ${signal}: stopping and removing everything this run started\n`);
    void cleanup().then(() => process.exit(130));
  });
}
const t0 = Date.now();
const say = (msg: string): void => void process.stderr.write(`[peers +${Math.round((Date.now() - t0) / 1000)}s] ${msg}\n`);

// ---------------------------------------------------------------------------------------------------
// figures

interface Pct {
  p50: number;
  p99: number;
  max: number;
}
interface BacklogFigures {
  events: number;
  writeEventsPerSecond: number;
  /** process spawned → first record appended on the topic */
  coldStartMs: number;
  /** first → last record of the backlog appended */
  drainEventsPerSecond: number;
  /** spawned → last record */
  drainWithStartEventsPerSecond: number;
  finished: boolean;
  cpuSecondsStart: number;
  cpuSecondsPer100k: number;
  /** CPU of the PostgreSQL cluster (postmaster and backends, the walsender for Debezium) during the drain. */
  postgresCpuSecondsPer100k?: number;
  /** CPU of the Kafka broker during the drain (null: its process was not found). */
  brokerCpuSecondsPer100k?: number | null;
  peakRssMiB: number;
}
interface RateFigures {
  targetRate: number;
  achievedRate: number;
  events: number;
  commitToAck: Pct;
  commitToConsumer: Pct;
  missing: number;
  /** commit → append p99 of the events committed in the last tenth of the load */
  endLagP99Ms: number;
  keptUp: boolean;
  cpuSecondsPer100k: number;
  /**
   * The whole machine's CPU during the load, as a share of its cores (1 = all busy): the system's process,
   * PostgreSQL (the writers' inserts and the system's own reads), the broker and this bench (writers,
   * consumer). Near 1, latency is queueing for CPU.
   */
  machineBusy?: { share: number; process: number; postgres: number; broker: number | null; bench: number };
}
interface SystemFigures {
  process: string;
  pid: number;
  backlog: BacklogFigures;
  rates: RateFigures[];
  /** rates not attempted because the system could not keep up with a lower one */
  skippedRates: number[];
  rssHighWaterMiB: number;
}
interface PeerResults {
  machine: Record<string, string | number>;
  parameters: Record<string, unknown>;
  ceiling: ProducerPerfResult;
  systems: Record<System, SystemFigures>;
  seconds: number;
}

const pct = (values: number[]): Pct => {
  const s = [...values].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] ?? NaN };
};

// ---------------------------------------------------------------------------------------------------
// the measured process of each system

interface Running {
  pid: number;
  spawnedAt: number;
  stop(): Promise<void>;
  alive(): boolean;
  logTail(): string;
}

function startRelayProcess(dir: string, env: NodeJS.ProcessEnv): Running {
  if (stopping.signal.aborted) throw new Error('the bench is stopping');
  const log = createWriteStream(path.join(dir, 'relay.log'), { flags: 'a' });
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/outbox.js'), 'relay'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const spawnedAt = Date.now();
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  writeFileSync(path.join(dir, 'relay.pid'), String(child.pid));
  let gone = false;
  const exited = new Promise<void>((resolve) =>
    child.on('exit', () => {
      gone = true;
      resolve();
    }),
  );
  return {
    pid: child.pid!,
    spawnedAt,
    alive: () => !gone,
    logTail: () => readFileSync(path.join(dir, 'relay.log'), 'utf8').split('\n').slice(-30).join('\n'),
    async stop() {
      if (gone) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
      log.end();
    },
  };
}

/**
 * Time a backlog drain: spawn → first record, first → last record, CPU and RSS of the process, and the
 * CPU that PostgreSQL and the broker spent meanwhile (the same machine: together they bound the rate).
 */
async function measureDrain(options: {
  admin: ReturnType<Kafka['admin']>;
  topic: string;
  n: number;
  proc: Running;
  /** The private cluster's data directory holds postmaster.pid. */
  clusterDir: string;
}): Promise<BacklogFigures & { writeEventsPerSecond: number }> {
  const { admin, topic, n, proc } = options;
  const postmaster = postmasterPid(options.clusterDir);
  const broker = brokerPid();
  let pgCpu: { stop(): number } | undefined;
  let brokerCpu: { stop(): number } | undefined;
  const sampler = sampleRss(proc.pid);
  // generous: on a box busy with other work a drain can run at a few hundred events/s
  const timeoutMs = Math.max(300_000, n * 5);
  let firstAt = 0;
  let cpuAtFirst = 0;
  let doneAt = 0;
  let records: number;
  for (;;) {
    records = await topicRecords(admin, topic);
    const now = Date.now();
    if (records > 0 && firstAt === 0) {
      firstAt = now;
      cpuAtFirst = cpuSeconds(proc.pid);
      pgCpu = cpuMeter(() => processTree(postmaster));
      brokerCpu = broker === undefined ? undefined : cpuMeter(() => [broker]);
      sampler.reset();
    }
    if (records >= n) {
      doneAt = now;
      break;
    }
    if (!proc.alive()) throw new Error(`the process died during the drain:\n${proc.logTail()}`);
    if (now - proc.spawnedAt > timeoutMs) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const cpuDone = cpuSeconds(proc.pid);
  const postgresCpu = pgCpu?.stop();
  const brokerCpuSeconds = brokerCpu?.stop();
  const peak = sampler.peakMiB();
  sampler.stop();
  const finished = doneAt > 0;
  const end = finished ? doneAt : Date.now();
  const drained = Math.min(records, n);
  return {
    events: n,
    writeEventsPerSecond: 0,
    coldStartMs: firstAt > 0 ? firstAt - proc.spawnedAt : NaN,
    drainEventsPerSecond: firstAt > 0 ? Math.round((drained / Math.max(1, end - firstAt)) * 1000) : 0,
    drainWithStartEventsPerSecond: Math.round((drained / Math.max(1, end - proc.spawnedAt)) * 1000),
    finished,
    cpuSecondsStart: Number(cpuAtFirst.toFixed(2)),
    cpuSecondsPer100k: per100k(cpuDone - cpuAtFirst, drained),
    ...(postgresCpu !== undefined ? { postgresCpuSecondsPer100k: per100k(postgresCpu, drained) } : {}),
    brokerCpuSecondsPer100k: brokerCpuSeconds === undefined ? null : per100k(brokerCpuSeconds, drained),
    peakRssMiB: peak,
  };
}

/** A drain that did not finish in time still has to end before the rates are measured (they would queue behind it). */
async function drained(admin: ReturnType<Kafka['admin']>, topic: string, n: number): Promise<void> {
  let last = -1;
  let stalledSince = Date.now();
  for (;;) {
    const records = await topicRecords(admin, topic);
    if (records >= n) return;
    if (records !== last) {
      last = records;
      stalledSince = Date.now();
    } else if (Date.now() - stalledSince > 120_000) {
      throw new Error(`${topic}: the backlog stopped draining at ${records} of ${n}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Paced loads at each rate, one after the other, until the system cannot keep up. */
async function measureRates(ctx: {
  kafka: Kafka;
  topic: string;
  url: string;
  system: System;
  proc: Running;
  clusterDir: string;
}): Promise<{ rates: RateFigures[]; skippedRates: number[] }> {
  const postmaster = postmasterPid(ctx.clusterDir);
  const broker = brokerPid();
  const rates: RateFigures[] = [];
  const skippedRates: number[] = [];
  const recv = await arrivals(ctx.kafka, ctx.topic, ctx.system);
  try {
    let from = 10_000_000;
    for (const rate of RATES) {
      if (rates.some((r) => !r.keptUp)) {
        skippedRates.push(rate);
        continue;
      }
      say(`${ctx.system}: ${rate} ev/s for ${SECONDS} s`);
      const cpu0 = cpuSeconds(ctx.proc.pid);
      const pgCpu = cpuMeter(() => processTree(postmaster));
      const brokerCpu = cpuMeter(() => (broker === undefined ? [] : [broker]));
      const benchCpu = process.cpuUsage();
      const loadStarted = Date.now();
      const load = await pacedLoad({ url: ctx.url, system: ctx.system, rate, seconds: SECONDS, from });
      const loadSeconds = (Date.now() - loadStarted) / 1000;
      const benchUsed = process.cpuUsage(benchCpu);
      const busy = {
        process: cpuSeconds(ctx.proc.pid) - cpu0,
        postgres: pgCpu.stop(),
        broker: broker === undefined ? null : brokerCpu.stop(),
        bench: (benchUsed.user + benchUsed.system) / 1e6,
      };
      const share = (seconds: number): number => Number((seconds / loadSeconds / os.cpus().length).toFixed(2));
      const machineBusy = {
        share: share(busy.process + busy.postgres + (busy.broker ?? 0) + busy.bench),
        process: share(busy.process),
        postgres: share(busy.postgres),
        broker: busy.broker === null ? null : share(busy.broker),
        bench: share(busy.bench),
      };
      from += rate * SECONDS;
      const deadline = Date.now() + ARRIVAL_WAIT_MS;
      const missingNow = (): number => [...load.committed.keys()].filter((id) => !recv.seen.has(id)).length;
      while (missingNow() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      const cpu1 = cpuSeconds(ctx.proc.pid);
      const arrived: Array<[number, Arrival]> = [];
      for (const [id, at] of load.committed) {
        const a = recv.seen.get(id);
        if (a) arrived.push([at, a]);
      }
      // A loop, not Math.max(...values): at 10k ev/s for 15 s the spread overflows the call stack.
      let firstCommit = Infinity;
      let lastCommit = -Infinity;
      for (const at of load.committed.values()) {
        if (at < firstCommit) firstCommit = at;
        if (at > lastCommit) lastCommit = at;
      }
      const tail = arrived.filter(([at]) => at >= lastCommit - (lastCommit - firstCommit) / 10).map(([at, a]) => a.appendedAt - at);
      const missing = load.committed.size - arrived.length;
      const endLagP99Ms = pct(tail).p99;
      rates.push({
        targetRate: rate,
        achievedRate: load.achievedRate,
        events: load.committed.size,
        commitToAck: pct(arrived.map(([at, a]) => a.appendedAt - at)),
        commitToConsumer: pct(arrived.map(([at, a]) => a.receivedAt - at)),
        missing,
        endLagP99Ms,
        keptUp: missing === 0 && endLagP99Ms < 5_000,
        cpuSecondsPer100k: per100k(cpu1 - cpu0, load.committed.size),
        machineBusy,
      });
      say(`${ctx.system} @ ${rate}: ${JSON.stringify(rates[rates.length - 1])}`);
    }
  } finally {
    await recv.stop();
  }
  return { rates, skippedRates };
}

// ---------------------------------------------------------------------------------------------------

async function createTopics(kafka: Kafka, topics: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: topics.map((topic) => ({ topic, numPartitions: PARTITIONS, replicationFactor: 1, configEntries: [{ name: 'message.timestamp.type', value: 'LogAppendTime' }] })),
    });
  } finally {
    await admin.disconnect();
  }
}

async function deleteTopics(kafka: Kafka, prefix: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const mine = (await admin.listTopics()).filter((t) => t.startsWith(prefix));
    if (mine.length > 0) await admin.deleteTopics({ topics: mine });
  } finally {
    await admin.disconnect();
  }
}

async function sql(url: string, text: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout || r.stderr || 'unknown'}`.split('\n')[0]!.trim();
}

async function machineInfo(registryUrl: string, install: ConnectInstall, cluster: PrivateCluster): Promise<Record<string, string | number>> {
  let apicurio = 'unknown';
  try {
    apicurio = ((await (await fetch(new URL('/apis/registry/v3/system/info', registryUrl))).json()) as { version?: string }).version ?? apicurio;
  } catch {
    /* unknown */
  }
  const c = new pg.Client({ connectionString: cluster.url('postgres') });
  await c.connect();
  const postgres = (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
  await c.end();
  const load = os.loadavg().map((l) => l.toFixed(2));
  return {
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    loadAverage: load.join(' '),
    uptime: firstLine('uptime', []),
    node: process.version,
    postgres,
    java: firstLine('java', ['-version']),
    kafkaBroker: /<kafka.version>(.*)<\/kafka.version>/.exec(readFileSync(path.join(ROOT, 'infra/kafka/pom.xml'), 'utf8'))?.[1] ?? 'unknown',
    kafkaConnect: install.versions.kafkaConnect,
    debezium: install.versions.debezium,
    apicurioConverter: install.versions.apicurioConverter,
    apicurioRegistry: apicurio,
  };
}

async function main(): Promise<void> {
  const started = Date.now();
  const env = readEnvironment();
  const base = loadConfig(env, { kafka: true, registry: true });
  const brokers = base.kafka.brokers.join(',');
  const run = `peers-${Date.now().toString(36)}`;
  for (const dir of removeStaleClusters()) say(`removed a cluster left behind by an earlier run: ${dir}`);

  say('Kafka Connect, Debezium and the Apicurio converter (downloaded on first use)');
  const install = installConnect();

  const cluster = await startPrivateCluster({ port: await freePort() });
  onCleanup('private PostgreSQL cluster', () => cluster.destroy());
  // the processes' logs outlive the cluster directory, as evidence (.stack/peers/last-run)
  onCleanup('keep the logs', async () => keepLogs(cluster.dir));
  say(`private PostgreSQL cluster on 127.0.0.1:${cluster.port} (${cluster.dir})`);
  const machine = await machineInfo(base.registry.url, install, cluster);

  const kafka = new Kafka({ clientId: run, brokers: base.kafka.brokers, logLevel: logLevel.ERROR });
  onCleanup('topics', () => deleteTopics(kafka, run));
  const topics: Record<System | 'ceiling', string> = {
    'kafka-outbox': `${run}-kafka-outbox-user.events`,
    debezium: `${run}-debezium-user.events`,
    ceiling: `${run}-producer-performance`,
  };
  await createTopics(kafka, Object.values(topics));
  const admin = kafka.admin();
  await admin.connect();
  onCleanup('kafka admin', () => admin.disconnect());

  // 1. the raw broker ceiling
  say(`ProducerPerformance: ${CEILING_RECORDS} x 1 KB, acks=all, idempotent`);
  const ceiling = await producerPerformance({ install, brokers, topic: topics.ceiling, records: CEILING_RECORDS, signal: stopping.signal });
  say(ceiling.output);

  const systems = {} as Record<System, SystemFigures>;

  // 2. kafka-outbox: migrate, backlog written while the relay is down, then `outbox relay`
  {
    const url = withSearchPath(cluster.url('kafka_outbox'));
    await sql(cluster.url('postgres'), 'CREATE DATABASE kafka_outbox');
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await migrate(c, { schema: DEFAULT_SCHEMA, logger: silentLogger() });
    await c.end();
    say(`kafka-outbox: writing a backlog of ${BACKLOG}`);
    const writeRate = await writeBacklog(url, 'kafka-outbox', BACKLOG);
    const relayEnv: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: url,
      KAFKA_BROKERS: brokers,
      SCHEMA_REGISTRY_URL: base.registry.url,
      OUTBOX_TOPIC_MAP: `user=${topics['kafka-outbox']}`,
      OUTBOX_TOPIC_SUFFIX: `.${run}`,
      OUTBOX_TOPIC_PARTITIONS: String(PARTITIONS),
      OUTBOX_ENV_FILE: '/dev/null',
      LOG_LEVEL: 'warn',
      KAFKAJS_NO_PARTITIONER_WARNING: '1',
    };
    say('kafka-outbox: starting `outbox relay` (cold start, backlog waiting)');
    const relay = startRelayProcess(cluster.dir, relayEnv);
    onCleanup('relay process', () => relay.stop());
    const backlog = {
      ...(await measureDrain({ admin, topic: topics['kafka-outbox'], n: BACKLOG, proc: relay, clusterDir: cluster.dir })),
      writeEventsPerSecond: Math.round(writeRate),
    };
    say(`kafka-outbox drain: ${JSON.stringify(backlog)}`);
    await drained(admin, topics['kafka-outbox'], BACKLOG);
    const { rates, skippedRates } = await measureRates({ kafka, topic: topics['kafka-outbox'], url, system: 'kafka-outbox', proc: relay, clusterDir: cluster.dir });
    const hwm = peakRssMiB(relay.pid);
    await relay.stop();
    systems['kafka-outbox'] = { process: 'node bin/outbox.js relay', pid: relay.pid, backlog, rates, skippedRates, rssHighWaterMiB: Math.round(hwm) };
  }

  // 3. Debezium: a first start creates the slot and publication; the backlog is written while the worker
  //    is down (the slot keeps the WAL), then the worker is started again.
  {
    const url = cluster.url('debezium');
    await sql(cluster.url('postgres'), 'CREATE DATABASE debezium');
    await sql(url, DEBEZIUM_OUTBOX_DDL);
    const connector: ConnectorOptions = {
      name: `${run.replace(/-/g, '_')}_dbz`,
      databasePort: cluster.port,
      database: 'debezium',
      topicPrefix: `${run}-debezium-`,
      registryUrl: base.registry.url,
      format: FORMAT,
      ...(DEBEZIUM_POLL_MS !== undefined ? { pollIntervalMs: DEBEZIUM_POLL_MS } : {}),
    };
    const startWorker = async (): Promise<ReturnType<typeof startConnectWorker>> => {
      if (stopping.signal.aborted) throw new Error('the bench is stopping');
      const w = startConnectWorker({ install, dir: cluster.dir, brokers, restPort: await freePort(), connector });
      onCleanup('Connect worker', () => w.stop());
      return w;
    };
    say('debezium: first start of the Connect worker (creates the replication slot)');
    const first = await startWorker();
    await first.waitRunning();
    await waitSlotActive(url, connector.name, 120_000);
    await first.stop();
    say(`debezium: writing a backlog of ${BACKLOG}`);
    const writeRate = await writeBacklog(url, 'debezium', BACKLOG);
    say('debezium: starting the Connect worker (cold start, backlog waiting)');
    const worker = await startWorker();
    const proc: Running = { pid: worker.pid, spawnedAt: worker.spawnedAt, stop: () => worker.stop(), alive: () => isAlive(worker.pid), logTail: worker.logTail };
    const backlog = { ...(await measureDrain({ admin, topic: topics.debezium, n: BACKLOG, proc, clusterDir: cluster.dir })), writeEventsPerSecond: Math.round(writeRate) };
    say(`debezium drain: ${JSON.stringify(backlog)}`);
    await worker.waitRunning();
    await drained(admin, topics.debezium, BACKLOG);
    const { rates, skippedRates } = await measureRates({ kafka, topic: topics.debezium, url, system: 'debezium', proc, clusterDir: cluster.dir });
    const hwm = peakRssMiB(worker.pid);
    await worker.stop();
    systems.debezium = { process: 'Kafka Connect standalone worker (java)', pid: worker.pid, backlog, rates, skippedRates, rssHighWaterMiB: Math.round(hwm) };
  }

  const results: PeerResults = {
    machine: {
      ...machine,
      loadAverageAtEnd: os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' '),
    },
    parameters: {
      backlog: BACKLOG,
      rates: RATES,
      seconds: SECONDS,
      ceilingRecords: CEILING_RECORDS,
      partitions: PARTITIONS,
      payloadBytes: 1000,
      debeziumFormat: FORMAT === 'avro' ? `Avro (Apicurio converter ${install.versions.apicurioConverter}, registry v2 API)` : 'JSON (Kafka JsonConverter, schemas off)',
      debeziumPollIntervalMs: DEBEZIUM_POLL_MS ?? 'default (500)',
      kafka: 'shared stack',
      postgres: 'private cluster (fsync and synchronous_commit on, wal_level=logical)',
      quick,
      clusterDir: cluster.dir,
    },
    ceiling,
    systems,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = writeResult(`peers-${stamp}`, results);
  writeResult('peers-latest', results);
  const out = argv.indexOf('--out');
  if (out >= 0) writeFileSync(path.resolve(argv[out + 1]!), `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`${render(results)}\nresults: ${path.relative(ROOT, file)}\n`);
}

function keepLogs(dir: string): void {
  const to = path.join(ROOT, '.stack', 'peers', 'last-run');
  rmSync(to, { recursive: true, force: true });
  mkdirSync(to, { recursive: true });
  for (const f of ['relay.log', 'connect.log', 'postgres.log', 'worker.properties', 'connector.properties']) {
    if (existsSync(path.join(dir, f))) copyFileSync(path.join(dir, f), path.join(to, f));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------
// the table

const fmt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const ms = (p: Pct): string => `p50 ${fmt(p.p50)} ms, p99 ${fmt(p.p99)} ms`;
/** Process + PostgreSQL + broker CPU per 100k events of a drain, when all three were measured. */
function machineCpuTotal(b: BacklogFigures): number | undefined {
  if (b.postgresCpuSecondsPer100k === undefined || b.brokerCpuSecondsPer100k === undefined || b.brokerCpuSecondsPer100k === null) return undefined;
  return Number((b.cpuSecondsPer100k + b.postgresCpuSecondsPer100k + b.brokerCpuSecondsPer100k).toFixed(2));
}

function machineCpu(b: BacklogFigures): string {
  const total = machineCpuTotal(b);
  if (total === undefined) return 'not measured';
  return `${total} s (${b.cpuSecondsPer100k} + ${b.postgresCpuSecondsPer100k ?? ''} + ${b.brokerCpuSecondsPer100k ?? ''})`;
}

const x = (a: number, b: number, digits = 1): string => (b > 0 && Number.isFinite(a / b) ? `${(a / b).toFixed(digits)}x` : '');

export function render(r: PeerResults): string {
  const ours = r.systems['kafka-outbox'];
  const dbz = r.systems.debezium;
  const p = r.parameters as { backlog: number; seconds: number; debeziumFormat: string; debeziumPollIntervalMs: unknown };
  const ceiling = r.ceiling.recordsPerSecond;
  const rows: Array<Record<string, string>> = [
    {
      measure: `raw broker ceiling (ProducerPerformance, ${fmt(r.ceiling.records)} x 1 KB, acks=all, idempotent)`,
      'kafka-outbox': '',
      debezium: '',
      'ours / debezium': `${fmt(ceiling)} rec/s`,
    },
    {
      measure: `backlog drain, ${fmt(p.backlog)} x 1 KB (first -> last event)`,
      'kafka-outbox': `${fmt(ours.backlog.drainEventsPerSecond)} ev/s${ours.backlog.finished ? '' : ' (did not finish)'} = ${x(ours.backlog.drainEventsPerSecond * 100, ceiling, 0).replace('x', '%')} of ceiling`,
      debezium: `${fmt(dbz.backlog.drainEventsPerSecond)} ev/s${dbz.backlog.finished ? '' : ' (did not finish)'} = ${x(dbz.backlog.drainEventsPerSecond * 100, ceiling, 0).replace('x', '%')} of ceiling`,
      'ours / debezium': x(ours.backlog.drainEventsPerSecond, dbz.backlog.drainEventsPerSecond, 2),
    },
    {
      measure: 'backlog drain including start-up (spawn -> last event)',
      'kafka-outbox': `${fmt(ours.backlog.drainWithStartEventsPerSecond)} ev/s`,
      debezium: `${fmt(dbz.backlog.drainWithStartEventsPerSecond)} ev/s`,
      'ours / debezium': x(ours.backlog.drainWithStartEventsPerSecond, dbz.backlog.drainWithStartEventsPerSecond, 2),
    },
    {
      measure: 'time to first event after a cold start (spawn -> first append)',
      'kafka-outbox': `${fmt(ours.backlog.coldStartMs)} ms`,
      debezium: `${fmt(dbz.backlog.coldStartMs)} ms`,
      'ours / debezium': x(ours.backlog.coldStartMs, dbz.backlog.coldStartMs, 2),
    },
    {
      measure: 'CPU seconds per 100k events, drain (process)',
      'kafka-outbox': `${ours.backlog.cpuSecondsPer100k} s`,
      debezium: `${dbz.backlog.cpuSecondsPer100k} s`,
      'ours / debezium': x(ours.backlog.cpuSecondsPer100k, dbz.backlog.cpuSecondsPer100k, 2),
    },
    {
      measure: 'CPU seconds per 100k events, drain: process + PostgreSQL + broker',
      'kafka-outbox': machineCpu(ours.backlog),
      debezium: machineCpu(dbz.backlog),
      'ours / debezium': x(machineCpuTotal(ours.backlog) ?? NaN, machineCpuTotal(dbz.backlog) ?? NaN, 2),
    },
    {
      measure: 'peak RSS during the drain (sampled) / whole run (VmHWM)',
      'kafka-outbox': `${fmt(ours.backlog.peakRssMiB)} / ${fmt(ours.rssHighWaterMiB)} MiB`,
      debezium: `${fmt(dbz.backlog.peakRssMiB)} / ${fmt(dbz.rssHighWaterMiB)} MiB`,
      'ours / debezium': x(ours.backlog.peakRssMiB, dbz.backlog.peakRssMiB, 2),
    },
  ];
  const allRates = [...new Set([...ours.rates, ...dbz.rates].map((f) => f.targetRate).concat(ours.skippedRates, dbz.skippedRates))].sort((a, b) => a - b);
  const pc = (share: number): string => `${Math.round(share * 100)} %`;
  const cell = (s: SystemFigures, rate: number, what: 'ack' | 'consumer' | 'cpu' | 'busy'): string => {
    const f = s.rates.find((q) => q.targetRate === rate);
    if (!f) return s.skippedRates.includes(rate) ? 'skipped: could not keep up with a lower rate' : 'n/a';
    const note = f.keptUp ? '' : ` - CANNOT KEEP UP (${fmt(f.missing)} missing after ${p.seconds} s + wait, end lag p99 ${fmt(f.endLagP99Ms)} ms)`;
    const achieved = f.achievedRate < f.targetRate * 0.9 ? ` [writers reached ${fmt(f.achievedRate)} ev/s]` : '';
    if (what === 'cpu') return `${f.cpuSecondsPer100k} s`;
    if (what === 'busy') {
      const b = f.machineBusy;
      return b ? `${pc(b.share)} (process ${pc(b.process)}, PostgreSQL ${pc(b.postgres)}, broker ${b.broker === null ? 'n/a' : pc(b.broker)}, bench ${pc(b.bench)})` : 'n/a';
    }
    return `${ms(what === 'ack' ? f.commitToAck : f.commitToConsumer)}${note}${achieved}`;
  };
  const ratio = (rate: number, what: 'ack' | 'consumer' | 'cpu' | 'busy'): string => {
    const a = ours.rates.find((q) => q.targetRate === rate);
    const b = dbz.rates.find((q) => q.targetRate === rate);
    if (!a || !b) return '';
    if (what === 'busy') return a.machineBusy && b.machineBusy ? x(a.machineBusy.share, b.machineBusy.share, 2) : '';
    if (what === 'cpu') return x(a.cpuSecondsPer100k, b.cpuSecondsPer100k, 2);
    const pa = what === 'ack' ? a.commitToAck : a.commitToConsumer;
    const pb = what === 'ack' ? b.commitToAck : b.commitToConsumer;
    return `p99 ${x(pa.p99, pb.p99, 2)}`;
  };
  for (const rate of allRates) {
    rows.push(
      {
        measure: `commit -> broker append at ${fmt(rate)} ev/s (${p.seconds} s)`,
        'kafka-outbox': cell(ours, rate, 'ack'),
        debezium: cell(dbz, rate, 'ack'),
        'ours / debezium': ratio(rate, 'ack'),
      },
      {
        measure: `commit -> consumer at ${fmt(rate)} ev/s`,
        'kafka-outbox': cell(ours, rate, 'consumer'),
        debezium: cell(dbz, rate, 'consumer'),
        'ours / debezium': ratio(rate, 'consumer'),
      },
      {
        measure: `CPU seconds per 100k events at ${fmt(rate)} ev/s`,
        'kafka-outbox': cell(ours, rate, 'cpu'),
        debezium: cell(dbz, rate, 'cpu'),
        'ours / debezium': ratio(rate, 'cpu'),
      },
      {
        measure: `machine's cores busy at ${fmt(rate)} ev/s`,
        'kafka-outbox': cell(ours, rate, 'busy'),
        debezium: cell(dbz, rate, 'busy'),
        'ours / debezium': ratio(rate, 'busy'),
      },
    );
  }
  const m = r.machine;
  return (
    `\nkafka-outbox vs Debezium — ${m.date}; ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB; load average ${m.loadAverage} (at end ${m.loadAverageAtEnd})\n` +
    `node ${m.node}, PostgreSQL ${m.postgres} (private cluster), ${m.java}; Kafka broker ${m.kafkaBroker} (shared stack), Kafka Connect ${m.kafkaConnect}, ` +
    `Debezium ${m.debezium}, Apicurio Registry ${m.apicurioRegistry}\n` +
    `kafka-outbox: ${ours.process}; Debezium: ${dbz.process}, Outbox Event Router, value format ${p.debeziumFormat}, poll.interval.ms ${String(p.debeziumPollIntervalMs)}\n\n` +
    `${table(rows)}\n\ntotal ${r.seconds} s\n`
  );
}

const renderAt = argv.indexOf('--render');
if (renderAt >= 0) {
  process.stdout.write(render(JSON.parse(readFileSync(argv[renderAt + 1]!, 'utf8')) as PeerResults));
} else {
  main()
    .then(() => cleanup())
    .then(() => process.exit(0))
    .catch(async (err: unknown) => {
      process.stderr.write(`bench:peers failed: ${String((err as Error)?.stack ?? err)}\n`);
      await cleanup();
      process.exit(1);
    });
}
