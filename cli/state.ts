import type { Logger } from '../core/logger';
import { foldAggregate } from '../projector/load-aggregate';
import type { AggregateReducer } from '../projector/types';

export interface StatePair {
  state_before: Record<string, unknown> | null;
  state_after: Record<string, unknown> | null;
}

/**
 * State before and after each event of an aggregate, folded with the projector's reducer of that
 * aggregate type (projector/load-aggregate `foldAggregate`). Undefined when the type has no reducer.
 */
export function stateHistory(args: {
  logger: Logger;
  /** The domain's reducers (a type without one has no state history). */
  reducers: AggregateReducer[];
  aggregateType: string;
  events: Array<{ event_id: string; aggregate_id: string; event_type: string; payload: Record<string, unknown>; aggregate_version: number; occurred_at: Date }>;
}): StatePair[] | undefined {
  const out: StatePair[] = [];
  let state: Record<string, unknown> | null = null;
  for (const e of args.events) {
    let after: Record<string, unknown> | null | undefined;
    try {
      after = foldAggregate(args.aggregateType, state, e, args.reducers);
    } catch (err) {
      args.logger.debug({ err, eventId: e.event_id }, 'state could not be folded; history shown without state');
      return undefined;
    }
    if (after === undefined) return undefined;
    out.push({ state_before: state, state_after: after });
    state = after;
  }
  return out;
}
