import type pg from 'pg';
import type { OutboxConfig } from '../core/config';
import { isOutboxError } from '../core/errors';
import type { Logger } from '../core/logger';
import { retryParked, skipParked } from '../relay/parked';
import type { Actor } from './auth';
import type { ConsoleData } from './data';
import { HttpError, stringField } from './http';
import type { Jobs } from './jobs';

/**
 * The console's actions (POST /api/...): retry or skip a parked event, start a rebuild. Each is called
 * with the authorized actor (console/auth.ts) and logs what it did and for whom.
 */

export type Action = (body: Record<string, unknown>, who: Actor) => Promise<{ status: number; body: unknown }>;

export interface ActionsOptions {
  config: OutboxConfig;
  pool: pg.Pool;
  data: ConsoleData;
  jobs: Jobs;
  log: Logger;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function eventIdField(body: Record<string, unknown>): string {
  const eventId = stringField(body, 'eventId', { required: true })!;
  if (!UUID.test(eventId)) throw new HttpError(400, `eventId must be a UUID, got "${eventId}"`);
  return eventId;
}

/** The actions by route. */
export function consoleActions({ config, pool, data, jobs, log }: ActionsOptions): Record<string, Action> {
  const withClient = async <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (err) {
      if (!isOutboxError(err)) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
  };

  return {
    '/api/parked/retry': async (body, who) => {
      const eventId = eventIdField(body);
      const row = await withClient((c) => retryParked(c, config.schema, eventId.toLowerCase()));
      data.invalidateOverview();
      log.info(
        { action: 'retry', eventId, aggregate: `${String(row.aggregate_type)}/${String(row.aggregate_id)}`, by: who.token, user: who.user },
        `console: parked event released for retry by ${who.by}`,
      );
      return { status: 200, body: { action: 'retry', by: who.by, ...row } };
    },
    '/api/parked/skip': async (body, who) => {
      const eventId = eventIdField(body);
      const reason = stringField(body, 'reason', { max: 500 });
      const note = `${reason ? `${reason}; ` : ''}by ${who.by} in the console`;
      const row = await withClient((c) => skipParked(c, config.schema, eventId.toLowerCase(), note));
      data.invalidateOverview();
      // An operator decision that changes what consumers see: logged at warn, as by `outbox parked skip`.
      log.warn(
        {
          action: 'skip',
          eventId,
          aggregate: `${String(row.aggregate_type)}/${String(row.aggregate_id)}`,
          version: row.aggregate_version,
          reason: row.park_reason,
          by: who.token,
          user: who.user,
        },
        `console: parked event skipped (marked delivered without publishing) by ${who.by}`,
      );
      return { status: 200, body: { action: 'skip', by: who.by, ...row } };
    },
    '/api/projections/rebuild': async (body, who) => {
      const projection = stringField(body, 'projection', { required: true, max: 63 })!;
      const known = await data.projections();
      const p = known.find((x) => x.name === projection);
      if (!p) throw new HttpError(404, `no projection named "${projection}" has run against this database`);
      const recent = p.building.find((g) => Date.now() - Date.parse(g.updatedAt ?? g.createdAt) < 120_000);
      if (recent) {
        return {
          status: 409,
          body: {
            error: `a rebuild of ${projection} is in progress (generation ${recent.generation}, last progress ${recent.updatedAt ?? recent.createdAt}); starting another would drop its shadow`,
          },
        };
      }
      const started = jobs.startRebuild(projection, who.by);
      if (!started.started) return { status: 409, body: { error: started.reason } };
      log.warn(
        { action: 'rebuild', projection, job: started.job.id, pid: started.job.pid, by: who.token, user: who.user },
        `console: rebuild of ${projection} started by ${who.by}`,
      );
      return { status: 202, body: { action: 'rebuild', by: who.by, job: started.job } };
    },
  };
}
