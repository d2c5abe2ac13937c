import { errorMessage } from '../core/errors';
import type { Logger } from '../core/logger';
import { foldAggregate } from '../projector/load-aggregate';
import type { AggregateReducer } from '../projector/types';

export interface StatePair {
  state_before: Record<string, unknown> | null;
  state_after: Record<string, unknown> | null;
}

/** The states of a history, or why there are none (one line, for the operator). */
export type StateHistory = { ok: true; states: StatePair[] } | { ok: false; reason: string };

/**
 * State before and after each event of an aggregate, folded with the projector's reducer of that
 * aggregate type (projector/load-aggregate `foldAggregate`). Not ok when the type has no reducer or
 * the reducer throws on an event: the history is then shown without states.
 */
export function stateHistory(args: {
  logger: Logger;
  /** The domain's reducers (a type without one has no state history). */
  reducers: AggregateReducer[];
  aggregateType: string;
  events: Array<{ event_id: string; aggregate_id: string; event_type: string; payload: Record<string, unknown>; aggregate_version: number; occurred_at: Date }>;
}): StateHistory {
  if (!args.reducers.some((r) => r.aggregateType === args.aggregateType)) {
    const known = args.reducers.map((r) => r.aggregateType);
    return { ok: false, reason: `no reducer for aggregate type "${args.aggregateType}" (reducers: ${known.length > 0 ? known.join(', ') : 'none'})` };
  }
  const out: StatePair[] = [];
  let state: Record<string, unknown> | null = null;
  for (const e of args.events) {
    let after: Record<string, unknown> | null | undefined;
    try {
      after = foldAggregate(args.aggregateType, state, e, args.reducers);
    } catch (err) {
      args.logger.debug({ err, eventId: e.event_id }, 'state could not be folded; history shown without state');
      return { ok: false, reason: `the reducer of "${args.aggregateType}" failed at version ${e.aggregate_version}: ${errorMessage(err)}` };
    }
    if (after === undefined) return { ok: false, reason: `no reducer for aggregate type "${args.aggregateType}"` };
    out.push({ state_before: state, state_after: after });
    state = after;
  }
  return { ok: true, states: out };
}
