/**
 * Relay memory while draining a large backlog: `--backlog` events (default 2,000,000) with 1 KB payloads
 * are loaded while no relay runs (in bulk, shaped as the insert trigger writes them: bench/bulk-outbox.ts),
 * then `node bin/outbox.js relay` is started and its resident set size
 * is sampled from /proc every 100 ms until the backlog is on the topic. Target: peak RSS <= 200 MB.
 *
 *   npm run bench:backlog [-- --backlog 2000000 --cpu-prof]
 *
 * `--compiled` runs the relay as the published package does, compiled (`dist/cli/main.js`, built first by
 * `npm run build`), instead of `bin/outbox.js` in a source checkout (which compiles the TypeScript sources
 * in process with tsx, and holds that compiler's memory).
 *
 * Beside the relay's own CPU, the CPU used during the drain by the PostgreSQL cluster (postmaster and
 * backends) and the Kafka broker is measured per 100k events: on one machine their sum bounds the drain
 * rate (cores / CPU seconds per event), whatever the relay does.
 *
 * `--cpu-prof` runs the relay under `node --cpu-prof` and prints where its CPU time went (top frames by
 * self time, grouped: PostgreSQL client, encoding, kafkajs, GC, idle; bench/profile-summary.ts).
 * PostgreSQL: a private cluster (initdb/pg_ctl, removed at the end). Kafka and the registry: the shared
 * stack (.stack/env or the environment); the topic is the run's own and deleted at the end.
 * Writes bench/results/backlog-memory-<date>.json.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { loadConfig, readEnvironment } from '../core/config';
import { silentLogger } from '../core/logger';
import { migrate } from '../infra/migrate';
import { DEFAULT_SCHEMA } from '../core/config';
import { postmasterPid, removeStaleClusters, startPrivateCluster } from './peers/postgres-cluster';
import { freePort } from './peers/ports';
import { brokerPid, cpuMeter, cpuSeconds, peakRssMiB, per100k, processTree, rssMiB } from './peers/proc-stats';
import { topicRecords } from './peers/workload';
import { bulkOutbox } from './bulk-outbox';
import { summarizeProfile, renderProfile } from './profile-summary';
import { arg, withSearchPath, writeResult } from './support';

const ROOT = path.resolve(__dirname, '..');
const BACKLOG = arg('backlog', 2_000_000);
const CPU_PROF = process.argv.includes('--cpu-prof');
const COMPILED = process.argv.includes('--compiled');
const TARGET_MIB = 200;
const say = (msg: string): void => void process.stderr.write(`[backlog-memory] ${msg}\n`);

async function main(): Promise<void> {
  const base = loadConfig(readEnvironment(), { kafka: true, registry: true });
  removeStaleClusters();
  const run = `backlog-${Date.now().toString(36)}`;
  const topic = `${run}-user.events`;
  const kafka = new Kafka({ clientId: run, brokers: base.kafka.brokers, logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const cluster = await startPrivateCluster({ port: await freePort() });
  let relay: ReturnType<typeof spawn> | null = null;
  const cleanup = async (): Promise<void> => {
    if (relay && relay.exitCode === null) relay.kill('SIGKILL');
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
    await cluster.destroy();
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 6, replicationFactor: 1 }] });
    const url = withSearchPath(cluster.url('kafka_outbox'));
    const c = new pg.Client({ connectionString: cluster.url('postgres') });
    await c.connect();
    await c.query('CREATE DATABASE kafka_outbox');
    await c.end();
    const m = new pg.Client({ connectionString: url });
    await m.connect();
    await migrate(m, { schema: DEFAULT_SCHEMA, logger: silentLogger() });
    await m.end();
    say(`writing a backlog of ${BACKLOG.toLocaleString('en-US')} x 1 KB (private cluster on port ${cluster.port})`);
    const writeRate = await bulkOutbox(url, { rows: BACKLOG, delivered: false, aggregatePrefix: 'u' });
    say(`written at ${Math.round(writeRate)} ev/s; starting the relay${CPU_PROF ? ' under --cpu-prof' : ''}`);

    const profDir = path.join(ROOT, '.stack', 'profiles', run);
    if (CPU_PROF) mkdirSync(profDir, { recursive: true });
    const log = createWriteStream(path.join(cluster.dir, 'relay.log'));
    if (COMPILED) {
      say('building dist/ (npm run build)');
      const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
      if (build.status !== 0) throw new Error('npm run build failed');
    }
    const entry = path.join(ROOT, COMPILED ? 'dist/cli/main.js' : 'bin/outbox.js');
    const postmaster = postmasterPid(cluster.dir);
    const broker = brokerPid();
    if (broker === undefined) say('the Kafka broker process was not found on this machine: its CPU is not measured');
    const pgCpu = cpuMeter(() => processTree(postmaster));
    const brokerCpu = cpuMeter(() => (broker === undefined ? [] : [broker]));
    relay = spawn(process.execPath, [...(CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), entry, 'relay'], {
      // Compiled, as a service runs it: no TypeScript config module (this checkout's outbox.config.ts), the
      // example's schemas by OUTBOX_SCHEMAS_DIR.
      cwd: COMPILED ? cluster.dir : ROOT,
      env: {
        ...process.env,
        ...(COMPILED ? { OUTBOX_SCHEMAS_DIR: path.join(ROOT, 'examples/users-service/schemas') } : {}),
        DATABASE_URL: url,
        KAFKA_BROKERS: base.kafka.brokers.join(','),
        SCHEMA_REGISTRY_URL: base.registry.url,
        OUTBOX_TOPIC_MAP: `user=${topic}`,
        OUTBOX_TOPIC_SUFFIX: `.${run}`,
        OUTBOX_ENV_FILE: '/dev/null',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    relay.stdout!.pipe(log);
    relay.stderr!.pipe(log);
    const pid = relay.pid!;
    const started = Date.now();
    let peak = 0;
    let firstAt = 0;
    const timeline: Array<{ percent: number; rssMiB: number; seconds: number }> = [];
    let nextMark = 10;
    const exited = new Promise<number | null>((resolve) => relay!.on('exit', (code) => resolve(code)));
    let done = 0;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssMiB(pid));
      } catch {
        /* exited */
      }
    }, 100);
    for (;;) {
      done = await topicRecords(admin, topic);
      if (done > 0 && firstAt === 0) firstAt = Date.now();
      const percent = (done / BACKLOG) * 100;
      while (percent >= nextMark && nextMark <= 100) {
        timeline.push({ percent: nextMark, rssMiB: Math.round(rssMiB(pid)), seconds: Math.round((Date.now() - started) / 1000) });
        nextMark += 10;
      }
      if (done >= BACKLOG) break;
      if (relay.exitCode !== null) throw new Error(`the relay exited with ${relay.exitCode}:\n${readFileSync(path.join(cluster.dir, 'relay.log'), 'utf8').slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const drainedAt = Date.now();
    clearInterval(sampler);
    const cpu = cpuSeconds(pid);
    const postgresCpu = pgCpu.stop();
    const brokerCpuSeconds = broker === undefined ? null : brokerCpu.stop();
    const hwm = peakRssMiB(pid);
    relay.kill('SIGTERM');
    await exited;
    const result = {
      date: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        memoryGiB: Math.round(os.totalmem() / 2 ** 30),
        loadAverage: os
          .loadavg()
          .map((l) => l.toFixed(2))
          .join(' '),
        node: process.version,
      },
      backlog: BACKLOG,
      backlogWriteEventsPerSecond: Math.round(writeRate),
      drainEventsPerSecond: Math.round((BACKLOG / Math.max(1, drainedAt - firstAt)) * 1000),
      drainSeconds: Math.round((drainedAt - started) / 1000),
      peakRssMiBSampled: Math.round(peak),
      rssHighWaterMiB: Math.round(hwm),
      targetMiB: TARGET_MIB,
      met: Math.max(peak, hwm) <= TARGET_MIB,
      relayForm: COMPILED ? 'compiled (dist/cli/main.js)' : 'source checkout (bin/outbox.js through tsx)',
      cpuSeconds: cpu,
      cpuSecondsPer100k: per100k(cpu, BACKLOG),
      // The drain's CPU on this machine: relay + PostgreSQL + broker (the registry is idle: schemas are cached).
      postgresCpuSecondsPer100k: per100k(postgresCpu, BACKLOG),
      brokerCpuSecondsPer100k: brokerCpuSeconds === null ? null : per100k(brokerCpuSeconds, BACKLOG),
      cpuBoundEventsPerSecond: brokerCpuSeconds === null ? null : Math.round((os.cpus().length * BACKLOG) / (cpu + postgresCpu + brokerCpuSeconds)),
      timeline,
      ...(CPU_PROF ? { profile: profileOf(profDir) } : {}),
    };
    const file = writeResult(`backlog-memory-${result.date.replace(/[:.]/g, '-')}`, result);
    process.stdout.write(
      `\nrelay draining ${BACKLOG.toLocaleString('en-US')} x 1 KB — ${result.date}, ${result.machine.cpus} cores, ${result.machine.memoryGiB} GiB, load ${result.machine.loadAverage}\n` +
        `  peak RSS ${result.peakRssMiBSampled} MiB sampled, ${result.rssHighWaterMiB} MiB VmHWM (target <= ${TARGET_MIB} MB: ${result.met ? 'met' : 'NOT met'})\n` +
        `  relay: ${result.relayForm}\n` +
        `  drain ${result.drainEventsPerSecond} ev/s; CPU s per 100k events: relay ${result.cpuSecondsPer100k}, PostgreSQL ${result.postgresCpuSecondsPer100k}, broker ${result.brokerCpuSecondsPer100k ?? 'n/a'}` +
        (result.cpuBoundEventsPerSecond !== null ? ` — ${result.machine.cpus} cores at that cost drain at most ${result.cpuBoundEventsPerSecond} ev/s\n` : '\n') +
        `  RSS by progress: ${timeline.map((t) => `${t.percent}% ${t.rssMiB} MiB`).join(', ')}\n` +
        (CPU_PROF && result.profile ? `\n${renderProfile(result.profile)}\n` : '') +
        `results: ${path.relative(ROOT, file)}\n`,
    );
  } finally {
    await cleanup();
  }
}

function profileOf(dir: string): ReturnType<typeof summarizeProfile> | undefined {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) return undefined;
  say(`profile: ${path.relative(ROOT, path.join(dir, file))}`);
  return summarizeProfile(JSON.parse(readFileSync(path.join(dir, file), 'utf8')));
}

main().catch((err: unknown) => {
  process.stderr.write(`backlog-memory failed: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
