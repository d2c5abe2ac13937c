/**
 * Debezium the way its users run it: a Kafka Connect worker (standalone mode, offsets in a file) with
 * the Debezium PostgreSQL connector (pgoutput, its own replication slot and publication), the Outbox
 * Event Router SMT routing by aggregate type to `<prefix><aggregate_type>.events` with the aggregate id
 * as the key, and Apicurio's Avro converter registering the value schemas in our registry.
 * Jars come from Maven Central on first use (infra/connect/install.sh), cached under .stack/connect.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

const ROOT = path.resolve(__dirname, '../..');

export interface ConnectInstall {
  dir: string;
  versions: { kafkaConnect: string; debezium: string; apicurioConverter: string };
}

/** Resolve (first use: download) the worker, Debezium and the converter; returns where they are. */
export function installConnect(): ConnectInstall {
  const dir = execFileSync('bash', [path.join(ROOT, 'infra/connect/install.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 900_000 }).trim();
  const m = /kafka-(.+)-debezium-(.+)-apicurio-(.+)$/.exec(path.basename(dir));
  return { dir, versions: { kafkaConnect: m?.[1] ?? '?', debezium: m?.[2] ?? '?', apicurioConverter: m?.[3] ?? '?' } };
}

/** The Debezium side's outbox table, shaped the way the Outbox Event Router expects (plus our metadata). */
export const DEBEZIUM_OUTBOX_DDL = `
CREATE TABLE outbox (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  aggregatetype  text NOT NULL,
  aggregateid    text NOT NULL,
  type           text NOT NULL,
  payload        jsonb NOT NULL,
  schema_version integer NOT NULL,
  actor_id       text NOT NULL,
  trace_id       text NOT NULL,
  correlation_id text,
  occurred_at    timestamptz NOT NULL DEFAULT now()
)`;

export interface ConnectorOptions {
  name: string;
  databasePort: number;
  database: string;
  /** Topic = `${topicPrefix}${aggregatetype}.events` */
  topicPrefix: string;
  registryUrl: string;
  /** 'avro' (Apicurio's converter) or 'json' (Kafka's JsonConverter, schemas off). */
  format: 'avro' | 'json';
  /** Debezium's poll.interval.ms (its default is 500). */
  pollIntervalMs?: number;
}

/** Apicurio's v2 API on the same server as the Confluent-compatible URL the project uses. */
export function apicurioV2Url(registryUrl: string): string {
  const u = new URL(registryUrl);
  u.pathname = '/apis/registry/v2';
  return u.toString().replace(/\/$/, '');
}

export function connectorProperties(o: ConnectorOptions): Record<string, string> {
  const converter: Record<string, string> =
    o.format === 'avro'
      ? {
          'value.converter': 'io.apicurio.registry.utils.converter.AvroConverter',
          'value.converter.apicurio.registry.url': apicurioV2Url(o.registryUrl),
          'value.converter.apicurio.registry.auto-register': 'true',
          'value.converter.apicurio.registry.find-latest': 'true',
        }
      : { 'value.converter': 'org.apache.kafka.connect.json.JsonConverter', 'value.converter.schemas.enable': 'false' };
  return {
    name: o.name,
    'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
    'tasks.max': '1',
    'database.hostname': '127.0.0.1',
    'database.port': String(o.databasePort),
    'database.user': 'postgres',
    'database.password': 'unused',
    'database.dbname': o.database,
    'topic.prefix': o.name,
    'plugin.name': 'pgoutput',
    'slot.name': o.name.replace(/[^a-z0-9_]/g, '_'),
    'publication.name': o.name.replace(/[^a-z0-9_]/g, '_'),
    'publication.autocreate.mode': 'filtered',
    'table.include.list': 'public.outbox',
    // The backlog is read from the replication slot (events written while the connector was down), not snapshotted.
    'snapshot.mode': 'no_data',
    'tombstones.on.delete': 'false',
    ...(o.pollIntervalMs !== undefined ? { 'poll.interval.ms': String(o.pollIntervalMs) } : {}),
    transforms: 'outbox',
    'transforms.outbox.type': 'io.debezium.transforms.outbox.EventRouter',
    'transforms.outbox.route.by.field': 'aggregatetype',
    'transforms.outbox.route.topic.replacement': `${o.topicPrefix}\${routedByValue}.events`,
    'transforms.outbox.table.field.event.key': 'aggregateid',
    'transforms.outbox.table.fields.additional.placement': 'type:header:event_type,schema_version:header,actor_id:header,trace_id:header,correlation_id:header,occurred_at:header',
    'transforms.outbox.table.expand.json.payload': 'true',
    'key.converter': 'org.apache.kafka.connect.storage.StringConverter',
    ...converter,
  };
}

const props = (p: Record<string, string>): string =>
  `${Object.entries(p)
    .map(([k, v]) => `${k}=${v.replace(/\\/g, '\\\\')}`)
    .join('\n')}\n`;

export interface ConnectWorker {
  pid: number;
  /** ms since epoch when the JVM was spawned */
  spawnedAt: number;
  /** Resolves when the connector's task is RUNNING (throws with the task's trace if it FAILED). */
  waitRunning(timeoutMs?: number): Promise<void>;
  /** Graceful stop (SIGTERM: offsets are flushed), SIGKILL after `timeoutMs`. */
  stop(timeoutMs?: number): Promise<void>;
  exited: Promise<number | null>;
  logTail(): string;
}

/** Start a standalone worker running one connector. Its files (config, offsets, log) live in `dir`. */
export function startConnectWorker(options: {
  install: ConnectInstall;
  dir: string;
  brokers: string;
  restPort: number;
  connector: ConnectorOptions;
  heap?: string;
}): ConnectWorker {
  const { install, dir } = options;
  const worker = {
    'bootstrap.servers': options.brokers,
    'key.converter': 'org.apache.kafka.connect.storage.StringConverter',
    'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
    'offset.storage.file.filename': path.join(dir, 'connect.offsets'),
    'offset.flush.interval.ms': '10000',
    'plugin.path': path.join(install.dir, 'plugins'),
    // install.sh synced the plugins' ServiceLoader manifests: no reflective scan of every jar at start-up
    'plugin.discovery': 'service_load',
    listeners: `http://127.0.0.1:${options.restPort}`,
  };
  writeFileSync(path.join(dir, 'worker.properties'), props(worker));
  writeFileSync(path.join(dir, 'connector.properties'), props(connectorProperties(options.connector)));
  const java = process.env.CONNECT_JAVA_HOME ? path.join(process.env.CONNECT_JAVA_HOME, 'bin/java') : 'java';
  // Kafka's own launch defaults (kafka-run-class.sh / connect-distributed.sh): heap 256 MiB..2 GiB, G1.
  const jvm = [
    ...(options.heap ?? '-Xms256M -Xmx2G').split(' '),
    '-server',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:InitiatingHeapOccupancyPercent=35',
    '-XX:+ExplicitGCInvokesConcurrent',
    '-XX:MaxInlineLevel=15',
    '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${path.join(ROOT, 'infra/connect/log4j2.properties')}`,
  ];
  const logFile = path.join(dir, 'connect.log');
  const log = createWriteStream(logFile, { flags: 'a' });
  const child: ChildProcess = spawn(
    java,
    [
      ...jvm,
      '-cp',
      `${path.join(install.dir, 'libs')}/*`,
      'org.apache.kafka.connect.cli.ConnectStandalone',
      path.join(dir, 'worker.properties'),
      path.join(dir, 'connector.properties'),
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const spawnedAt = Date.now();
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  writeFileSync(path.join(dir, 'connect.pid'), String(child.pid));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const base = `http://127.0.0.1:${options.restPort}`;
  const name = options.connector.name;
  const logTail = (): string => {
    try {
      return readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      return '';
    }
  };
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  return {
    pid: child.pid!,
    spawnedAt,
    exited,
    logTail,
    async waitRunning(timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (gone) throw new Error(`the Kafka Connect worker exited during start-up:\n${logTail()}`);
        try {
          const res = await fetch(`${base}/connectors/${name}/status`);
          if (res.ok) {
            const status = (await res.json()) as { connector: { state: string; trace?: string }; tasks: Array<{ state: string; trace?: string }> };
            const failed = [status.connector, ...status.tasks].find((s) => s.state === 'FAILED');
            if (failed) throw new Error(`Debezium connector ${name} FAILED: ${failed.trace ?? ''}`);
            if (status.tasks.length > 0 && status.tasks.every((t) => t.state === 'RUNNING')) return;
          }
        } catch (err) {
          if (String(err).includes('FAILED')) throw err;
        }
        if (Date.now() > deadline) throw new Error(`the Debezium connector did not start within ${timeoutMs} ms:\n${logTail()}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async stop(timeoutMs = 30_000) {
      if (gone) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
      log.end();
    },
  };
}

/** Wait until the connector's replication slot exists and is being read (streaming has begun). */
export async function waitSlotActive(url: string, slot: string, timeoutMs = 120_000): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { rows } = await c.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      if (rows[0]?.active) return;
      if (Date.now() > deadline) throw new Error(`replication slot ${slot} did not become active within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await c.end();
  }
}

/** Jar versions actually on disk (for the results). */
export function jarVersion(install: ConnectInstall, plugin: string, prefix: string): string {
  const jar = readdirSync(path.join(install.dir, 'plugins', plugin)).find((f) => f.startsWith(prefix));
  return jar ?? 'missing';
}
