import type { OutboxConfig } from '../../../core/config';
import { formatTable, type CommandContext } from '../../../cli/framework';
import type { RunCounts, RunResults } from './check';
import type { Say } from './setup';
import type { Workload } from './workload';

/** The demo's summary: counts, the `users` read model and one user's audit history, as text or as JSON (--json). */

export interface ReportOptions {
  ctx: CommandContext;
  /** The demo's configuration (its database). */
  config: OutboxConfig;
  run: string;
  target: string;
  topic: string;
  admin: { relay: number; projector: number };
  counts: RunCounts;
  readBack: { count: number };
  workload: Workload;
  results: RunResults;
  /** Seconds since the demo started. */
  elapsed: number;
  say: Say;
}

export function report(o: ReportOptions): void {
  if (o.ctx.json) jsonReport(o);
  else textReport(o);
}

function jsonReport({ ctx, run, target, topic, admin, counts, readBack, workload, results, elapsed }: ReportOptions): void {
  const { written, projected } = counts;
  const { steps, grace, conflict, late } = workload;
  ctx.out.json({
    run,
    database: target,
    topic,
    admin,
    counts: {
      written: written.written,
      published: { delivered: written.delivered, readBackFromTopic: readBack.count },
      projected: { auditLog: projected.auditLog, users: projected.users },
      match: results.countsMatch,
    },
    requests: steps.map((st) => ({ what: st.what, userId: st.userId, ...st.request, ifMatch: st.ifMatch ?? null, status: st.response.status, etag: st.response.etag })),
    conflict: { userId: grace.id, ifMatch: 1, status: conflict.status, currentVersion: conflict.etag },
    lateTransaction: { ...late, published: results.lateReadBack, projected: results.lateAt ?? null },
    users: results.userRows.map((u) => ({ ...u, version: Number(u.version) })),
    audit: {
      aggregate: `user/${grace.id}`,
      events: results.audit.map((r) => ({ ...r, aggregate_version: Number(r.aggregate_version) })),
      chain: {
        verified: results.chainVerified,
        writer: results.chains.featured,
        allAggregatesOfRun: { ok: results.chains.allOk, checked: results.chains.allChecked },
        onArrival: results.onArrival,
      },
    },
    seconds: Number(elapsed.toFixed(1)),
  });
}

function textReport({ ctx, config, topic, counts, readBack, workload, results, elapsed, say }: ReportOptions): void {
  const { written, projected } = counts;
  const { grace, late } = workload;
  const { audit, chains, onArrival, lateAt } = results;
  say('');
  say('results of this run');
  say(`  events written     ${written.written}  (outbox rows)`);
  say(`  events published   ${written.delivered}  (outbox_delivery delivered)  ·  ${readBack.count} read back from ${topic} (Avro via the registry)`);
  say(`  events projected   ${projected.auditLog}  (audit_log rows)  ·  ${projected.users} users rows`);
  say(`  written = published = projected: ${results.countsMatch ? 'yes' : 'NO'}`);
  say(
    `  late event         outbox id ${late.outboxId}, committed ${(late.heldMs / 1000).toFixed(1)}s late → ${results.lateReadBack ? 'on the topic' : 'NOT on the topic'}${lateAt ? ` (partition ${lateAt.kafka_partition}, offset ${lateAt.kafka_offset})` : ''}, ${lateAt ? 'projected' : 'NOT projected'}`,
  );
  say('');
  say("users read model (the projector's `users` view, this run)");
  say(
    formatTable(
      ['USER_ID', 'EMAIL', 'NAME', 'ACTIVE', 'VERSION', 'EVENTS'],
      results.userRows.map((u) => [
        u.user_id,
        `${u.email}${u.email_verified ? ' ✓' : ''}`,
        u.display_name,
        u.active ? 'yes' : `no (${u.deactivation_reason ?? ''})`,
        u.version,
        u.events_applied,
      ]),
    ),
  );
  say('');
  say(`audit history of user/${grace.id} (audit_log: who, from which request, when)`);
  say(
    formatTable(
      ['VERSION', 'OCCURRED_AT', 'EVENT', 'ACTOR', 'TRACE_ID', 'CORRELATION_ID', 'CHAIN', 'HASH'],
      audit.map((r) => [
        r.aggregate_version,
        r.occurred_at.toISOString(),
        `${r.event_type} v${r.writer_schema_version}`,
        r.actor_id,
        r.trace_id,
        r.correlation_id,
        r.chain_status,
        `${r.hash.slice(0, 12)}…`,
      ]),
    ),
  );
  if (results.chainVerified) {
    say(
      `chain verified: verifyChain recomputed ${chains.featured.checked} event(s) of user/${grace.id} from the outbox; ${audit.length} link(s) checked on arrival by audit_log: all ok` +
        ` (all ${workload.users.length} users of this run: ${chains.allChecked} event(s), ${onArrival.ok} ok on arrival)`,
    );
  } else {
    const b = chains.featured.firstBroken ?? chains.firstBroken;
    say(`chain NOT verified: ${b ? `user/${b.aggregateId} v${b.version}: ${b.reason}` : `on arrival ${JSON.stringify(onArrival)}`}`);
  }
  say('');
  say(`more: DATABASE_URL=${config.databaseUrl} node bin/outbox.js audit history user/${grace.id}`);
  say(
    `console: DATABASE_URL=${config.databaseUrl} OUTBOX_TOPIC_MAP=user=${topic} node bin/outbox.js console  → http://${ctx.config.console?.host ?? '127.0.0.1'}:${ctx.config.console?.port ?? 9470}`,
  );
  say(`demo finished in ${elapsed.toFixed(1)}s. The stack keeps running; stop it with: npm run stack:down`);
}
