import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnTs } from '../support/processes';
import { isAlive } from '../support/private-stack';

// `npm run bench:peers -- --quick`: every part of the peer benchmark runs once, small — a private
// PostgreSQL cluster, ProducerPerformance, kafka-outbox's relay and a Debezium Kafka Connect worker
// against the same workload — and the results have every figure. Figures are not judged here (speed is
// for the bench itself); what is checked is that each measure was taken and nothing was left running.
// The first run downloads Kafka Connect and Debezium from Maven Central (cached under .stack/connect).

jest.setTimeout(900_000);

interface Pct {
  p50: number;
  p99: number;
}
interface Results {
  machine: Record<string, string | number>;
  parameters: { quick: boolean; clusterDir: string; debeziumFormat: string; rates: number[] };
  ceiling: { records: number; recordsPerSecond: number };
  systems: Record<
    'kafka-outbox' | 'debezium',
    {
      pid: number;
      backlog: { events: number; finished: boolean; coldStartMs: number; drainEventsPerSecond: number; cpuSecondsPer100k: number; peakRssMiB: number };
      rates: Array<{ targetRate: number; events: number; missing: number; commitToAck: Pct; commitToConsumer: Pct; cpuSecondsPer100k: number }>;
      rssHighWaterMiB: number;
    }
  >;
}

test('bench:peers --quick measures both systems and the broker ceiling, and cleans up', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'peers-quick-'));
  const out = path.join(dir, 'peers.json');
  try {
    const child = spawnTs('bench/peers/run.ts', { ...process.env, LOG_LEVEL: 'warn' }, ['--quick', '--out', out]);
    const code = await child.exited;
    if (code !== 0) throw new Error(`bench:peers --quick exited with ${code}:\n${child.output().slice(-4000)}`);
    const r = JSON.parse(readFileSync(out, 'utf8')) as Results;

    expect(r.parameters.quick).toBe(true);
    expect(r.machine).toEqual(expect.objectContaining({ cpus: expect.any(Number), memoryGiB: expect.any(Number), loadAverage: expect.any(String) }));
    expect(r.parameters.debeziumFormat).toMatch(/^Avro \(Apicurio converter/);
    expect(r.ceiling.records).toBeGreaterThan(0);
    expect(r.ceiling.recordsPerSecond).toBeGreaterThan(0);
    for (const system of ['kafka-outbox', 'debezium'] as const) {
      const s = r.systems[system];
      expect({ system, finished: s.backlog.finished }).toEqual({ system, finished: true });
      expect(s.backlog.coldStartMs).toBeGreaterThan(0);
      expect(s.backlog.drainEventsPerSecond).toBeGreaterThan(0);
      expect(s.backlog.cpuSecondsPer100k).toBeGreaterThan(0);
      expect(s.backlog.peakRssMiB).toBeGreaterThan(0);
      expect(s.rssHighWaterMiB).toBeGreaterThan(0);
      expect(s.rates.map((x) => x.targetRate)).toEqual(r.parameters.rates);
      for (const rate of s.rates) {
        expect({ system, rate: rate.targetRate, missing: rate.missing }).toEqual({ system, rate: rate.targetRate, missing: 0 });
        expect(rate.events).toBeGreaterThan(0);
        expect(Number.isFinite(rate.commitToAck.p99)).toBe(true);
        expect(Number.isFinite(rate.commitToConsumer.p99)).toBe(true);
        expect(rate.cpuSecondsPer100k).toBeGreaterThan(0);
      }
      // the relay and the Connect worker were stopped
      expect({ system, alive: isAlive(s.pid) }).toEqual({ system, alive: false });
    }
    // the private PostgreSQL cluster was stopped and removed
    expect(existsSync(r.parameters.clusterDir)).toBe(false);
    expect(child.output()).toMatch(/kafka-outbox vs Debezium/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
