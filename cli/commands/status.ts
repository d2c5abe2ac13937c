import { probeKafka, describeError } from '../../core/admin-server';
import { errorMessage } from '../../core/errors';
import { isStalled, readBacklog, type BacklogStats } from '../../core/metrics';
import { redact } from '../../core/redact';
import { dbTarget } from '../../core/pg';
import { pgError, requireRegistry, withPool } from '../connections';
import type { Command } from '../framework';
import { load } from '../lazy';
import { projectionStatus, type ProjectionStatus } from '../projections';
import { readShardOwners, type ShardOwner } from '../../relay/own-shards';
import { formatShards } from '../../relay/shard-plan';

export interface StatusReport {
  schema: string;
  /** `stalled`: events (not parked) waited, and nothing was delivered, for longer than the stall threshold (as outbox_relay_stalled). */
  database: { target: string; ok: boolean; stalled?: boolean; error?: string } & Partial<BacklogStats>;
  kafka: { brokers: string[]; ok: boolean; brokerCount?: number; error?: string };
  projections: { ok: boolean; items: ProjectionStatus[]; error?: string };
  /**
   * Sharded relays (OUTBOX_RELAY_SHARDED): the queue's shard count (null before it has shards), each
   * running instance with the shards it owns, and the shards nobody owns right now.
   */
  shards: { ok: boolean; shardCount?: number | null; owners?: ShardOwner[]; unowned?: number[]; error?: string };
  registry: { url: string; ok: boolean; subjects?: string[]; error?: string };
  /** The event schemas the relay and projector use (from --schemas, OUTBOX_SCHEMAS_DIR or the config module). */
  catalog: {
    ok: boolean;
    configFile?: string;
    dir?: string;
    source?: string;
    aggregateTypes?: string[];
    /** Event types with their versions, `InvoiceIssued v1..2`. */
    eventTypes?: string[];
    projections?: string[];
    /** Catalog subjects the registry does not have yet (the relay registers them when it starts). */
    unregistered?: string[];
    error?: string;
  };
}

function age(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${Math.round(seconds % 60)}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d${Math.floor((seconds % 86400) / 3600)}h`;
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'Backlog, oldest undelivered age, parked aggregates, projection lag and registered schemas',
  description: 'Every part is gathered even when another fails; the exit code is 1 when any part could not be read.',
  needs: { database: true, kafka: true, registry: true },
  async run({ config, logger, libLogger, json, out, domain: loadDomain }) {
    const timeoutMs = Math.min(config.kafka.connectionTimeoutMs * 2, 5000);
    const report: StatusReport = {
      schema: config.schema,
      database: { target: dbTarget(config.databaseUrl), ok: false },
      kafka: { brokers: config.kafka.brokers, ok: false },
      projections: { ok: false, items: [] },
      shards: { ok: false },
      registry: { url: config.registry.url, ok: false },
      catalog: { ok: false },
    };
    const problems: string[] = [];
    try {
      const domain = await loadDomain();
      const catalog = domain.catalog();
      Object.assign(report.catalog, {
        ok: true,
        ...(domain.configFile ? { configFile: domain.configFile } : {}),
        dir: catalog.dir,
        source: domain.schemasSource,
        aggregateTypes: catalog.aggregateTypes(),
        eventTypes: catalog.eventTypes().map((t) => `${t} v1..${catalog.latest(t)?.version ?? 1}`),
        projections: domain.projectionNames,
      });
    } catch (err) {
      report.catalog.error = redact(errorMessage(err));
      problems.push(`schemas: ${report.catalog.error}`);
    }

    const db = withPool(config, logger, async (pool) => {
      const stats = await readBacklog((sql, params) => pool.query(sql, params), config.schema).catch((err: unknown) => {
        throw pgError(err, config);
      });
      Object.assign(report.database, stats, { ok: true, stalled: isStalled(stats) });
      try {
        report.projections.items = await projectionStatus({ config, pool, logger: libLogger });
        report.projections.ok = true;
      } catch (err) {
        report.projections.error = redact(errorMessage(err));
        problems.push(`projections: ${report.projections.error}`);
      }
      try {
        Object.assign(report.shards, await readShardOwners(pool, config.schema), { ok: true });
      } catch (err) {
        report.shards.error = redact(errorMessage(err));
        problems.push(`relay shards: ${report.shards.error}`);
      }
    }).catch((err: unknown) => {
      report.database.error = redact(errorMessage(err));
      report.projections.error = 'needs PostgreSQL';
      report.shards.error = 'needs PostgreSQL';
      problems.unshift(report.database.error);
    });
    const kafka = probeKafka(config.kafka, timeoutMs, libLogger).then(
      (n) => {
        report.kafka.ok = true;
        report.kafka.brokerCount = n;
      },
      (err: unknown) => {
        report.kafka.error = `Kafka at ${config.kafka.brokers.join(',')} is unreachable: ${redact(describeError(err))}`;
        problems.push(report.kafka.error);
      },
    );
    const registry = requireRegistry(config.registry, timeoutMs).then(
      (subjects) => {
        report.registry.ok = true;
        report.registry.subjects = subjects.sort();
      },
      (err: unknown) => {
        report.registry.error = redact(errorMessage(err));
        problems.push(report.registry.error);
      },
    );
    await Promise.all([db, kafka, registry]);
    if (report.catalog.ok && report.registry.ok) {
      const { loadCatalog } = load('catalog');
      const known = new Set(report.registry.subjects);
      report.catalog.unregistered = [
        ...new Set(
          loadCatalog(report.catalog.dir!)
            .all()
            .map((e) => e.subject),
        ),
      ].filter((s) => !known.has(s));
    }

    if (json) {
      out.json(report);
    } else {
      const d = report.database;
      out.line(`PostgreSQL ${d.target} (schema ${report.schema})`);
      if (d.ok) {
        out.line(`  backlog               ${d.backlog} event(s) not yet delivered`);
        out.line(`  oldest undelivered    ${d.backlog ? `${age(d.oldestUndeliveredAgeSeconds ?? 0)} (enqueued ${d.oldestUndeliveredAt?.toISOString() ?? '?'})` : '-'}`);
        out.line(`  parked                ${d.parkedAggregates} aggregate(s), ${d.parkedEvents} event(s)${d.parkedAggregates ? '  → outbox parked list' : ''}`);
        out.line(`  last delivery         ${d.lastDeliveredAt ? `${age(d.lastDeliveryAgeSeconds ?? 0)} ago (${d.lastDeliveredAt.toISOString()})` : '-'}`);
        if (d.stalled)
          out.line(
            `  STALLED               ${d.pendingEvents} event(s) waiting up to ${age(d.oldestPendingAgeSeconds ?? 0)}, nothing delivered since${d.lastDeliveredAt ? '' : ' ever'}: is a relay running, and can the brokers take writes (in-sync replicas)?`,
          );
      } else out.line(`  error: ${d.error}`);
      out.line(`Kafka ${report.kafka.brokers.join(',')}`);
      out.line(report.kafka.ok ? `  reachable, ${report.kafka.brokerCount} broker(s)` : `  error: ${report.kafka.error}`);
      out.line('Projections');
      if (!report.projections.ok) out.line(`  error: ${report.projections.error}`);
      else if (report.projections.items.length === 0) out.line('  (none recorded yet)');
      for (const p of report.projections.items) {
        const lag = p.lag === undefined ? 'lag ?' : `lag ${p.lag}`;
        out.line(`  ${p.name.padEnd(20)}  ${lag.padEnd(10)}  last applied ${p.lastAppliedOffset ?? '-'}${p.updatedAt ? ` at ${p.updatedAt}` : ''}${p.note ? `  (${p.note})` : ''}`);
      }
      const sh = report.shards;
      if (!sh.ok) out.line(`Relay shards\n  error: ${sh.error}`);
      else if (sh.shardCount == null) out.line('Relay shards\n  (none: run outbox migrate)');
      else {
        const owners = sh.owners!;
        out.line(`Relay shards ${sh.shardCount}, ${owners.length} sharded relay instance(s) running`);
        for (const o of owners) out.line(`  ${o.instance.padEnd(20)}  ${String(o.shards.length).padStart(3)} shard(s)  ${formatShards(o.shards) || '-'}  (pid ${o.pid})`);
        const unowned = sh.unowned!;
        if (unowned.length > 0) out.line(`  unowned               ${unowned.length} shard(s)  ${owners.length === 0 ? '(no sharded relay running)' : formatShards(unowned)}`);
      }
      const c = report.catalog;
      if (c.ok) {
        out.line(`Event schemas ${c.dir} (${c.source}${c.configFile && !c.source?.includes(c.configFile) ? `; config ${c.configFile}` : ''})`);
        out.line(`  aggregate types       ${c.aggregateTypes!.join(', ') || '(none)'}`);
        out.line(`  event types           ${c.eventTypes!.join(', ') || '(none)'}`);
        out.line(`  projections           ${c.projections!.join(', ') || '(none)'}`);
        if (c.unregistered?.length) out.line(`  not yet registered    ${c.unregistered.join(', ')} (the relay registers them when it starts)`);
      } else out.line(`Event schemas\n  error: ${c.error}`);
      out.line(`Schema registry ${report.registry.url}`);
      if (report.registry.ok) {
        out.line(`  ${report.registry.subjects!.length} subject(s)`);
        for (const s of report.registry.subjects!) out.line(`    ${s}`);
      } else out.line(`  error: ${report.registry.error}`);
    }
    if (problems.length > 0) {
      out.error(`outbox: status incomplete: ${problems.join('; ')}`);
      return 1;
    }
    return 0;
  },
};
