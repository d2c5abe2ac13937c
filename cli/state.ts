import type pg from 'pg';
import type { OutboxConfig } from '../core/config';
import type { Logger } from '../core/logger';
import { hasModule } from './optional';

export interface StatePair {
  state_before: Record<string, unknown> | null;
  state_after: Record<string, unknown> | null;
}

/**
 * State before and after each event of an aggregate, when the projector can fold that aggregate type
 * (projector/index.ts exporting `foldAggregate(aggregateType, state, event)`). Undefined when it cannot.
 */
export async function stateHistory(args: {
  pool: pg.Pool;
  config: OutboxConfig;
  logger: Logger;
  aggregateType: string;
  aggregateId: string;
  events: Array<{ event_type: string; schema_version: number; payload: Record<string, unknown>; aggregate_version: number; occurred_at: Date }>;
}): Promise<StatePair[] | undefined> {
  if (!hasModule('projector/index')) return undefined;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require('../projector/index') as Record<string, unknown>;
  const fold = mod.foldAggregate as
    | ((aggregateType: string, state: Record<string, unknown> | null, event: (typeof args.events)[number]) => Record<string, unknown> | null | undefined)
    | undefined;
  if (typeof fold !== 'function') return undefined;
  const out: StatePair[] = [];
  let state: Record<string, unknown> | null = null;
  for (const e of args.events) {
    const after = fold(args.aggregateType, state, e);
    if (after === undefined) return undefined;
    out.push({ state_before: state, state_after: after });
    state = after;
  }
  return out;
}
