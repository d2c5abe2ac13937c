// @ts-check
// Per-customer totals, by currency: how many orders are open and cancelled, and what the open ones are
// worth. A second projection over the same topic, with a consumer group and checkpoint of its own. It
// keeps what it needs to know about each order (customer, currency, last total) in a second table it owns.
import { defineProjection } from 'kafka-outbox';
import { linesOf, totalOf } from '../order.js';

/**
 * @typedef {import('kafka-outbox').HandlerContext} HandlerContext
 * @typedef {import('kafka-outbox').DecodedEvent} DecodedEvent
 */

/**
 * Add to the totals of one customer in one currency.
 * @param {HandlerContext} ctx
 * @param {{ customer: string, currency: string, open: number, cancelled: number, cents: number }} d
 */
async function addToTotals(ctx, d) {
  await ctx.client.query(
    `INSERT INTO ${ctx.table('customer_totals')} AS t (customer_id, currency, open_orders, cancelled_orders, open_total_cents)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (customer_id, currency) DO UPDATE SET open_orders = t.open_orders + EXCLUDED.open_orders,
       cancelled_orders = t.cancelled_orders + EXCLUDED.cancelled_orders, open_total_cents = t.open_total_cents + EXCLUDED.open_total_cents`,
    [d.customer, d.currency, d.open, d.cancelled, d.cents],
  );
}

/**
 * @param {DecodedEvent} event
 * @param {HandlerContext} ctx
 */
async function readOrder(event, ctx) {
  const { rows } = await ctx.client.query(`SELECT customer_id, currency, total_cents, cancelled, version FROM ${ctx.table('customer_orders')} WHERE order_id = $1`, [
    event.aggregateId,
  ]);
  const r = rows[0];
  return r ? { customer: r.customer_id, currency: r.currency, total: Number(r.total_cents), cancelled: r.cancelled, version: Number(r.version) } : undefined;
}

export const customerTotalsProjection = defineProjection({
  name: 'customer_totals',
  aggregateTypes: ['order'],
  tables: {
    customer_totals: `CREATE TABLE customer_totals (
        customer_id text NOT NULL, currency text NOT NULL, open_orders integer NOT NULL, cancelled_orders integer NOT NULL,
        open_total_cents bigint NOT NULL, PRIMARY KEY (customer_id, currency))`,
    customer_orders: `CREATE TABLE customer_orders (
        order_id text PRIMARY KEY, customer_id text NOT NULL, currency text NOT NULL, total_cents bigint NOT NULL,
        cancelled boolean NOT NULL, version bigint NOT NULL)`,
  },
  handlers: {
    async OrderPlaced(event, ctx) {
      if (await readOrder(event, ctx)) return undefined; // already applied
      const p = event.payload;
      await ctx.client.query(`INSERT INTO ${ctx.table('customer_orders')} VALUES ($1, $2, $3, 0, false, $4)`, [
        event.aggregateId,
        p.customer_id,
        p.currency,
        event.aggregateVersion,
      ]);
      await addToTotals(ctx, { customer: String(p.customer_id), currency: String(p.currency), open: 1, cancelled: 0, cents: 0 });
      return undefined;
    },
    async OrderLinesSet(event, ctx) {
      const o = await readOrder(event, ctx);
      if (!o) return { rejected: `OrderLinesSet for order ${event.aggregateId}, which was never placed` };
      if (event.aggregateVersion <= o.version) return undefined;
      const total = totalOf(linesOf(event.payload));
      await ctx.client.query(`UPDATE ${ctx.table('customer_orders')} SET total_cents = $2, version = $3 WHERE order_id = $1`, [event.aggregateId, total, event.aggregateVersion]);
      if (!o.cancelled) await addToTotals(ctx, { customer: o.customer, currency: o.currency, open: 0, cancelled: 0, cents: total - o.total });
      return undefined;
    },
    async OrderCancelled(event, ctx) {
      const o = await readOrder(event, ctx);
      if (!o) return { rejected: `OrderCancelled for order ${event.aggregateId}, which was never placed` };
      if (event.aggregateVersion <= o.version || o.cancelled) return undefined;
      await ctx.client.query(`UPDATE ${ctx.table('customer_orders')} SET cancelled = true, version = $2 WHERE order_id = $1`, [event.aggregateId, event.aggregateVersion]);
      await addToTotals(ctx, { customer: o.customer, currency: o.currency, open: -1, cancelled: 1, cents: -o.total });
      return undefined;
    },
  },
});
