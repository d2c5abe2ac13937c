// @ts-check
// The one breaking change of the order events, as an upcaster the decoder runs on every v1 event it
// reads (declared in outbox.config.js). Projections and reducers only ever see the latest shape.

/**
 * "12.50" -> 1250. v1 prices were decimal strings in the order's currency, with at most two decimals.
 * @param {unknown} price
 * @returns {number}
 */
export function priceToCents(price) {
  const m = typeof price === 'string' ? /^\s*(\d{1,12})(?:\.(\d{1,2}))?\s*$/.exec(price) : null;
  if (!m) throw new Error(`OrderLinesSet v1: price ${JSON.stringify(price)} is not a decimal amount such as "12.50"`);
  return Number(m[1]) * 100 + Number((m[2] ?? '').padEnd(2, '0'));
}

/**
 * OrderLinesSet v1 -> v2: each line's `price` ("12.50") becomes `unit_price_cents` (1250).
 * @param {Record<string, unknown>} payload
 * @returns {Record<string, unknown>}
 */
export function upcastOrderLinesSetV1(payload) {
  const lines = Array.isArray(payload.lines) ? payload.lines : [];
  return {
    ...payload,
    lines: lines.map((/** @type {{ sku: string, quantity: number, price: string }} */ l) => ({ sku: l.sku, quantity: l.quantity, unit_price_cents: priceToCents(l.price) })),
  };
}
