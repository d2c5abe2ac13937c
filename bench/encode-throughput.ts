/**
 * Encode (and decode) throughput of the schema layer: events/s for ~1 KB payloads, after prepare()
 * (ids cached, avsc types local: no HTTP per message).
 *
 *   npx tsx bench/encode-throughput.ts [--seconds 5]
 *
 * Registers the project's schemas under a namespace of its own (bench_<random>), never the real subjects.
 * Uses SCHEMA_REGISTRY_URL from the environment / .stack/env. Writes a JSON summary to bench/results/.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../core/config';
import { createLogger } from '../core/logger';
import { loadCatalog } from '../schemas/catalog';
import { createEventDecoder } from '../schemas/decode-event';
import { createEventEncoder, type OutboxEventForEncoding } from '../schemas/encode-event';
import { arg } from './support';

async function main(): Promise<void> {
  const seconds = arg('seconds', 5);
  const config = loadConfig(undefined, { registry: true });
  const logger = createLogger({ level: 'warn', name: 'bench-encode' });
  const catalog = loadCatalog(undefined, { namespace: `bench_${randomBytes(4).toString('hex')}` });
  const encoder = createEventEncoder({ registry: config.registry, catalog, logger });
  await encoder.prepare();

  const name = 'x'.repeat(1000);
  const payload = { email: 'ada.lovelace@example.com', name };
  const payloadBytes = Buffer.byteLength(JSON.stringify(payload));
  const base: OutboxEventForEncoding = {
    eventId: randomUUID(),
    eventType: 'UserRegistered',
    schemaVersion: 1,
    aggregateType: 'user',
    aggregateId: 'user-1',
    aggregateVersion: 1,
    occurredAt: '2024-05-06T07:08:09.123456Z',
    actorId: 'actor-7',
    traceId: 'trace-9',
    correlationId: 'corr-1',
    causationId: null,
    traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    hash: randomBytes(32),
    prevHash: randomBytes(32),
    payload,
  };

  // Warm up, then measure encode.
  for (let i = 0; i < 5000; i++) await encoder.encode({ ...base, aggregateVersion: i });
  let n = 0;
  let last: Buffer = Buffer.alloc(0);
  const t0 = process.hrtime.bigint();
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    for (let i = 0; i < 1000; i++) {
      const r = await encoder.encode({ ...base, aggregateVersion: n + i });
      if (!r.ok) throw new Error(r.reason);
      last = r.value;
    }
    n += 1000;
  }
  const encodeSec = Number(process.hrtime.bigint() - t0) / 1e9;

  const decoder = createEventDecoder({ registry: config.registry, catalog, logger });
  for (let i = 0; i < 5000; i++) await decoder.decode(last);
  let m = 0;
  const t1 = process.hrtime.bigint();
  const deadline2 = Date.now() + seconds * 1000;
  while (Date.now() < deadline2) {
    for (let i = 0; i < 1000; i++) {
      const r = await decoder.decode(last);
      if (!r.ok) throw new Error(r.reason);
    }
    m += 1000;
  }
  const decodeSec = Number(process.hrtime.bigint() - t1) / 1e9;

  const summary = {
    bench: 'encode-throughput',
    at: new Date().toISOString(),
    node: process.version,
    payloadJsonBytes: payloadBytes,
    messageBytes: last.length,
    encode: { events: n, seconds: Number(encodeSec.toFixed(3)), eventsPerSecond: Math.round(n / encodeSec) },
    decode: { events: m, seconds: Number(decodeSec.toFixed(3)), eventsPerSecond: Math.round(m / decodeSec) },
  };
  const dir = path.join(__dirname, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, `encode-throughput-${Date.now()}.json`), JSON.stringify(summary, null, 2));
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
