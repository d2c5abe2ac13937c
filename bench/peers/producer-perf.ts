/**
 * The raw broker ceiling: Kafka's own `org.apache.kafka.tools.ProducerPerformance` (kafka-tools, on the
 * Connect worker's classpath) sending 1 KB records with acks=all and the idempotent producer, as fast
 * as it can, to a topic shaped like the outbox topics (6 partitions). No database, no encoding.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ConnectInstall } from './connect-worker';

const run = promisify(execFile);

export interface ProducerPerfResult {
  records: number;
  recordsPerSecond: number;
  mbPerSecond: number;
  avgLatencyMs: number;
  p50Ms: number;
  p99Ms: number;
  output: string;
}

export async function producerPerformance(options: {
  install: ConnectInstall;
  brokers: string;
  topic: string;
  records: number;
  signal?: AbortSignal;
}): Promise<ProducerPerfResult> {
  const java = process.env.CONNECT_JAVA_HOME ? path.join(process.env.CONNECT_JAVA_HOME, 'bin/java') : 'java';
  const { stdout, stderr } = await run(
    java,
    [
      '-Xmx512M',
      '-cp',
      `${path.join(options.install.dir, 'libs')}/*`,
      `-Dlog4j2.configurationFile=${path.resolve(__dirname, '../../infra/connect/log4j2.properties')}`,
      'org.apache.kafka.tools.ProducerPerformance',
      '--topic',
      options.topic,
      '--num-records',
      String(options.records),
      '--record-size',
      '1024',
      '--throughput',
      '-1',
      '--producer-props',
      `bootstrap.servers=${options.brokers}`,
      'acks=all',
      'enable.idempotence=true',
    ],
    { timeout: 600_000, maxBuffer: 16 * 1024 * 1024, ...(options.signal ? { signal: options.signal } : {}) },
  );
  // "200000 records sent, 51234.5 records/sec (50.03 MB/sec), 300.12 ms avg latency, 800.00 ms max latency, 250 ms 50th, 700 ms 95th, 780 ms 99th, 795 ms 99.9th."
  const line = stdout
    .split('\n')
    .reverse()
    .find((l) => /records sent, .* records\/sec/.test(l));
  const m = line && /(\d+) records sent, ([\d.]+) records\/sec \(([\d.]+) MB\/sec\), ([\d.]+) ms avg latency.*?, (\d+) ms 50th, \d+ ms 95th, (\d+) ms 99th/.exec(line);
  if (!m) throw new Error(`ProducerPerformance printed no summary:\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`);
  return {
    records: Number(m[1]),
    recordsPerSecond: Math.round(Number(m[2])),
    mbPerSecond: Number(m[3]),
    avgLatencyMs: Number(m[4]),
    p50Ms: Number(m[5]),
    p99Ms: Number(m[6]),
    output: line!,
  };
}
