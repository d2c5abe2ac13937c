// @ts-check
// The `orders` read model: one row per order, folded by the same function as the aggregate (order.js).
// Readers query the view `<OUTBOX_PROJECTOR_SCHEMA>.orders`; `outbox rebuild orders` builds a new
// generation of the table from the topic and swaps the view over to it.
import { defineProjection } from 'kafka-outbox';
import { evolveOrder } from '../order.js';

/**
 * @typedef {import('../order.js').OrderState} OrderState
 * @typedef {import('kafka-outbox').HandlerContext} HandlerContext
 * @typedef {import('kafka-outbox').DecodedEvent} DecodedEvent
 */

/**
 * @param {Record<string, any>} row
 * @returns {OrderState}
 */
function fromRow(row) {
  return {
    order_id: row.order_id,
    customer_id: row.customer_id,
    currency: row.currency,
    status: row.status,
    lines: row.lines,
    total_cents: Number(row.total_cents),
    cancel_reason: row.cancel_reason,
    placed_at: row.placed_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
    version: Number(row.version),
  };
}

/**
 * One handler for every order event: read the row, fold the event, write the row back.
 * @param {DecodedEvent} event
 * @param {HandlerContext} ctx
 */
async function applyOrderEvent(event, ctx) {
  const table = ctx.table('orders');
  const { rows } = await ctx.client.query(`SELECT * FROM ${table} WHERE order_id = $1`, [event.aggregateId]);
  const before = rows[0] ? fromRow(rows[0]) : null;
  if (before && event.aggregateVersion <= before.version) return undefined; // already applied
  if (!before && event.eventType !== 'OrderPlaced') return { rejected: `${event.eventType} for order ${event.aggregateId}, which was never placed` };
  const s = evolveOrder(before, event);
  if (!s) return undefined;
  await ctx.client.query(
    `INSERT INTO ${table} (order_id, customer_id, currency, status, lines, line_count, total_cents, cancel_reason, placed_at, updated_at, version)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, currency = EXCLUDED.currency, status = EXCLUDED.status,
       lines = EXCLUDED.lines, line_count = EXCLUDED.line_count, total_cents = EXCLUDED.total_cents, cancel_reason = EXCLUDED.cancel_reason,
       placed_at = EXCLUDED.placed_at, updated_at = EXCLUDED.updated_at, version = EXCLUDED.version`,
    [s.order_id, s.customer_id, s.currency, s.status, JSON.stringify(s.lines), s.lines.length, s.total_cents, s.cancel_reason, s.placed_at, s.updated_at, s.version],
  );
  return undefined;
}

export const ordersProjection = defineProjection({
  name: 'orders',
  aggregateTypes: ['order'],
  tables: {
    orders: `CREATE TABLE orders (
        order_id text PRIMARY KEY, customer_id text NOT NULL, currency text NOT NULL, status text NOT NULL,
        lines jsonb NOT NULL, line_count integer NOT NULL, total_cents bigint NOT NULL, cancel_reason text,
        placed_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, version bigint NOT NULL);
      CREATE INDEX ON orders (customer_id)`,
  },
  handlers: {
    OrderPlaced: applyOrderEvent,
    OrderLinesSet: applyOrderEvent,
    OrderCancelled: applyOrderEvent,
  },
});
