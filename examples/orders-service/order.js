// @ts-check
// The `order` aggregate: how its events fold into its state. One function, used three ways:
// - the service folds an order before each command (loadAggregate: latest snapshot + newer events),
// - the projector stores a snapshot every OUTBOX_SNAPSHOT_EVERY events (through `reducers` in outbox.config.js),
// - `outbox audit history order/<id>` shows the state before and after each event.
import { defineReducer } from 'kafka-outbox';
import { upcastOrderLinesSetV1 } from './upcasters.js';

/**
 * @typedef {{ sku: string, quantity: number, unit_price_cents: number }} OrderLine
 * @typedef {{
 *   order_id: string, customer_id: string, currency: string, status: 'open' | 'cancelled',
 *   lines: OrderLine[], total_cents: number, cancel_reason: string | null,
 *   placed_at: string, updated_at: string, version: number
 * }} OrderState
 */

/**
 * Lines in the v2 shape. Events read from Kafka are already upcast; the service also folds rows of the
 * outbox table as they were written, so a v1 payload (a `price` string per line) is upcast here too.
 * @param {Record<string, unknown>} payload
 * @returns {OrderLine[]}
 */
export function linesOf(payload) {
  const raw = Array.isArray(payload.lines) ? payload.lines : [];
  const v1 = raw.some((/** @type {Record<string, unknown>} */ l) => l.unit_price_cents === undefined && l.price !== undefined);
  const lines = /** @type {Record<string, unknown>[]} */ (v1 ? upcastOrderLinesSetV1(payload).lines : raw);
  return lines.map((l) => ({ sku: String(l.sku), quantity: Number(l.quantity), unit_price_cents: Number(l.unit_price_cents ?? 0) }));
}

/** @param {OrderLine[]} lines */
export const totalOf = (lines) => lines.reduce((sum, l) => sum + l.quantity * l.unit_price_cents, 0);

/**
 * The state after one more event (null before OrderPlaced). Lenient: an event that does not fit
 * (lines for an order never placed) leaves the state as it is.
 * @param {OrderState | null} state
 * @param {import('kafka-outbox').ReducibleEvent} event
 * @returns {OrderState | null}
 */
export function evolveOrder(state, event) {
  const p = /** @type {Record<string, unknown>} */ (event.payload ?? {});
  const at = event.occurredAt.toISOString();
  if (event.eventType === 'OrderPlaced') {
    return {
      order_id: event.aggregateId,
      customer_id: String(p.customer_id),
      currency: String(p.currency),
      status: 'open',
      lines: [],
      total_cents: 0,
      cancel_reason: null,
      placed_at: at,
      updated_at: at,
      version: event.aggregateVersion,
    };
  }
  if (!state) return state;
  const next = { ...state, updated_at: at, version: event.aggregateVersion };
  switch (event.eventType) {
    case 'OrderLinesSet': {
      const lines = linesOf(p);
      return { ...next, lines, total_cents: totalOf(lines) };
    }
    case 'OrderCancelled':
      return { ...next, status: 'cancelled', cancel_reason: String(p.reason) };
    default:
      return next;
  }
}

/** Bump `version` whenever evolveOrder changes: snapshots taken by an older fold are then ignored. */
export const orderReducer = defineReducer({
  aggregateType: 'order',
  version: 1,
  initial: /** @type {OrderState | null} */ (null),
  evolve: evolveOrder,
});
