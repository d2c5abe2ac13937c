import { probeKafka, describeError } from '../../core/admin-server';
import { errorMessage } from '../../core/errors';
import { readBacklog, type BacklogStats } from '../../core/metrics';
import { redact } from '../../core/redact';
import { dbTarget, pgError, requireRegistry, withPool } from '../connections';
import type { Command } from '../framework';
import { projectionStatus, type ProjectionStatus } from '../projections';

export interface StatusReport {
  schema: string;
  database: { target: string; ok: boolean; error?: string } & Partial<BacklogStats>;
  kafka: { brokers: string[]; ok: boolean; brokerCount?: number; error?: string };
  projections: { ok: boolean; items: ProjectionStatus[]; error?: string };
  registry: { url: string; ok: boolean; subjects?: string[]; error?: string };
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
  async run({ config, logger, libLogger, json, out }) {
    const timeoutMs = Math.min(config.kafka.connectionTimeoutMs * 2, 5000);
    const report: StatusReport = {
      schema: config.schema,
      database: { target: dbTarget(config.databaseUrl), ok: false },
      kafka: { brokers: config.kafka.brokers, ok: false },
      projections: { ok: false, items: [] },
      registry: { url: config.registry.url, ok: false },
    };
    const problems: string[] = [];

    const db = withPool(config, logger, async (pool) => {
      const stats = await readBacklog((sql, params) => pool.query(sql, params), config.schema).catch((err: unknown) => {
        throw pgError(err, config);
      });
      Object.assign(report.database, stats, { ok: true });
      try {
        report.projections.items = await projectionStatus({ config, pool, logger: libLogger });
        report.projections.ok = true;
      } catch (err) {
        report.projections.error = redact(errorMessage(err));
        problems.push(`projections: ${report.projections.error}`);
      }
    }).catch((err: unknown) => {
      report.database.error = redact(errorMessage(err));
      report.projections.error = 'needs PostgreSQL';
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

    if (json) {
      out.json(report);
    } else {
      const d = report.database;
      out.line(`PostgreSQL ${d.target} (schema ${report.schema})`);
      if (d.ok) {
        out.line(`  backlog               ${d.backlog} event(s) not yet delivered`);
        out.line(`  oldest undelivered    ${d.backlog ? `${age(d.oldestUndeliveredAgeSeconds ?? 0)} (enqueued ${d.oldestUndeliveredAt?.toISOString() ?? '?'})` : '-'}`);
        out.line(`  parked                ${d.parkedAggregates} aggregate(s), ${d.parkedEvents} event(s)${d.parkedAggregates ? '  → outbox parked list' : ''}`);
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
