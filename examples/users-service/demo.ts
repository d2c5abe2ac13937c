import { randomBytes } from 'node:crypto';
import { sleep } from '../../core/retry';
import type { Command } from '../../cli/framework';
import { readBackFromTopic, readResults, waitForRun } from './demo/check';
import { connectPipeline, startPipeline, stopPipeline } from './demo/pipeline';
import { report } from './demo/report';
import { checkServers, DEFAULT_DATABASE, demoFlags, prepareDatabase, prepareSchemaAndTopic, sayer } from './demo/setup';
import { driveUsersService, prepareService } from './demo/workload';

/**
 * `outbox demo`: the whole pipeline on the local stack in one process. It uses its own database
 * (`--database`, default `outbox_demo`, created if missing and kept between runs), its own topic
 * (`<database>.user.events`) and consumer groups, and fresh user ids per run, so it can be re-run and
 * never touches what the tests or a real deployment use. It migrates, starts a relay and a projector
 * (admin ports printed), runs the users-service workload through the TypeScript API, waits until every
 * event is published and projected, and prints the counts, the `users` read model and one user's audit
 * history with the verified hash chain. Relay and projector are stopped at the end; the stack keeps running.
 *
 * Its steps live in demo/: setup (flags, servers, database, schemas, topic), pipeline (pools, relay,
 * projector, admin ports), workload (the users service), check (wait, read back, verify) and report.
 */
export const demoCommand: Command = {
  name: 'demo',
  summary: 'Run the users-service demo on the local stack (migrate, relay, projector, workload, audit)',
  description: [
    'Uses its own database (--database, created if missing and kept between runs) on the DATABASE_URL',
    'server, the topic <database>.user.events and fresh user ids per run: re-runnable, and it never',
    'touches the tests or a real deployment. Relay and projector run in this process with admin ports',
    '(/metrics, /healthz, /readyz) and are stopped at the end; the stack keeps running.',
  ].join('\n'),
  flags: {
    database: { type: 'string', placeholder: 'name', description: 'Database of the demo on the DATABASE_URL server', default: DEFAULT_DATABASE },
    'relay-port': { type: 'string', placeholder: 'port', description: 'Admin port of the relay (a free one if taken; 0 = any)', default: '9464' },
    'projector-port': { type: 'string', placeholder: 'port', description: 'Admin port of the projector (a free one if taken; 0 = any)', default: '9465' },
    hold: { type: 'string', placeholder: 'seconds', description: 'How long the late transaction stays open', default: '3' },
    linger: { type: 'string', placeholder: 'seconds', description: 'Keep relay and projector (and their admin ports) up this long after the summary', default: '0' },
  },
  needs: { database: true, kafka: true, registry: true },
  async run(ctx) {
    const started = Date.now();
    const say = sayer(ctx);
    const { database, relayPort, projectorPort, holdMs, lingerMs } = demoFlags(ctx);

    // 1. Prepare: the servers answer; the demo's database (migrated) and topic.
    await checkServers(ctx);
    const run = randomBytes(3).toString('hex');
    const { config, topic, target } = await prepareDatabase({ ctx, database, run, say });
    await prepareSchemaAndTopic({ config, logger: ctx.libLogger, topic, say });

    const pipeline = await connectPipeline({ ctx, config, say });
    try {
      // 2. Relay and projector, in this process, each with its admin port.
      const admin = await startPipeline(pipeline, { ctx, config, relayPort, projectorPort, say });

      // 3. The workload, through the users service.
      const service = await prepareService({ pipeline, config, run, topic });
      const workload = await driveUsersService({ service, pipeline, config, run, holdMs, say });

      // 4. Wait until every event of this run is published and projected; read it back from the topic.
      const ids = workload.users.map((u) => u.id);
      const counts = await waitForRun({ pool: pipeline.pool, config, ids });
      const readBack = await readBackFromTopic({ config, logger: ctx.libLogger, topic, pool: pipeline.pool, ids, run });
      const results = await readResults({ pool: pipeline.pool, config, ids, featuredId: workload.grace.id, lateEventId: workload.late.eventId, counts, readBack });

      // 5. Report.
      const elapsed = (Date.now() - started) / 1000;
      report({ ctx, config, run, target, topic, admin, counts, readBack, workload, results, elapsed, say });
      if (lingerMs > 0) {
        say(`relay and projector stay up ${(lingerMs / 1000).toFixed(0)}s more (admin ports above)…`);
        await sleep(lingerMs);
      }
      return results.countsMatch && results.chainVerified && results.lateReadBack && results.lateAt !== undefined ? 0 : 1;
    } finally {
      await stopPipeline(pipeline, say);
    }
  },
};
