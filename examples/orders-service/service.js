// @ts-check
// The orders service's commands and queries. A command folds the order (its latest snapshot plus the
// newer events of the outbox table, through order.js), checks the business rule, and appends the one
// event that records the change, with the version the client last saw (If-Match) as the expected
// version: a conflict writes nothing and is answered 412 with the current version. The outbox table is
// the service's only state; the read models (orders, customer_totals) are built from Kafka by `outbox project`.
import { randomBytes } from 'node:crypto';
import { appendEvents, withTransaction } from 'kafka-outbox';
import { loadAggregate } from 'kafka-outbox/projector';
import { orderReducer } from './order.js';

/**
 * @typedef {import('./order.js').OrderState} OrderState
 * @typedef {import('./order.js').OrderLine} OrderLine
 * @typedef {{ actorId: string, requestId: string, traceId: string }} RequestMeta
 * @typedef {{ eventType: string, schemaVersion: number, payload: Record<string, unknown> }} Change
 * @typedef {{ status: number, etag?: number, body: unknown }} Outcome
 */

const quote = (/** @type {string} */ name) => `"${name.replace(/"/g, '""')}"`;

export class OrdersService {
  /**
   * @param {{ pool: import('pg').Pool, schema?: string, projectorSchema?: string }} options
   *   schema: OUTBOX_SCHEMA (default outbox); projectorSchema: OUTBOX_PROJECTOR_SCHEMA (default <schema>_read), where the snapshots are.
   */
  constructor(options) {
    this.pool = options.pool;
    this.schema = options.schema ?? 'outbox';
    this.projectorSchema = options.projectorSchema ?? `${this.schema}_read`;
    this.outboxTable = `${quote(this.schema)}.outbox`;
  }

  /**
   * The order as of now: the latest snapshot the projector took plus the events after it, read from
   * the outbox table (so a command sees every committed event, not only the projected ones).
   * @param {import('pg').ClientBase | import('pg').Pool} db
   * @param {string} orderId
   * @returns {Promise<{ state: OrderState | null, version: number }>}
   */
  async load(db, orderId) {
    const loaded = await loadAggregate(db, 'order', orderId, { reducer: orderReducer, outboxSchema: this.projectorSchema, eventsTable: this.outboxTable });
    return { state: /** @type {OrderState | null} */ (loaded.state), version: loaded.version };
  }

  /** @param {string} orderId the order's current version (0: no such order) */
  async versionOf(orderId) {
    const { rows } = await this.pool.query(`SELECT coalesce(max(aggregate_version), 0)::int AS v FROM ${this.outboxTable} WHERE aggregate_type = 'order' AND aggregate_id = $1`, [
      orderId,
    ]);
    return /** @type {number} */ (rows[0].v);
  }

  /** @param {string} orderId @returns {Promise<Outcome>} */
  async get(orderId) {
    const { state, version } = await this.load(this.pool, orderId);
    if (!state) return { status: 404, body: { error: `order ${orderId} not found` } };
    return { status: 200, etag: version, body: state };
  }

  /**
   * POST /orders: a new order (expected version 0: the id must be unused).
   * @param {{ orderId: string, customerId: string, currency: string }} input
   * @param {RequestMeta} meta
   */
  place(input, meta) {
    return this.command(input.orderId, { expectedVersion: 0, created: true }, meta, (state) =>
      state
        ? { status: 409, message: `order ${input.orderId} already exists` }
        : { eventType: 'OrderPlaced', schemaVersion: 1, payload: { customer_id: input.customerId, currency: input.currency } },
    );
  }

  /**
   * PUT /orders/:id/lines: replace the lines of an open order.
   * @param {string} orderId @param {OrderLine[]} lines @param {number | undefined} ifMatch @param {RequestMeta} meta
   */
  setLines(orderId, lines, ifMatch, meta) {
    return this.command(orderId, { expectedVersion: ifMatch }, meta, (state) =>
      state.status === 'cancelled'
        ? { status: 409, message: `order ${orderId} is cancelled: its lines cannot change` }
        : { eventType: 'OrderLinesSet', schemaVersion: 2, payload: { lines } },
    );
  }

  /**
   * POST /orders/:id/cancel.
   * @param {string} orderId @param {string} reason @param {number | undefined} ifMatch @param {RequestMeta} meta
   */
  cancel(orderId, reason, ifMatch, meta) {
    return this.command(orderId, { expectedVersion: ifMatch }, meta, (state) =>
      state.status === 'cancelled' ? { status: 409, message: `order ${orderId} is already cancelled` } : { eventType: 'OrderCancelled', schemaVersion: 1, payload: { reason } },
    );
  }

  /**
   * Every event of the order, as written (payloads in the schema version they were written with).
   * @param {string} orderId
   */
  async history(orderId) {
    const { rows } = await this.pool.query(
      `SELECT aggregate_version::int AS version, occurred_at, event_type, schema_version, actor_id, correlation_id AS request_id, trace_id, event_id::text, payload
         FROM ${this.outboxTable} WHERE aggregate_type = 'order' AND aggregate_id = $1 ORDER BY aggregate_version`,
      [orderId],
    );
    return rows.map((r) => ({ ...r, occurred_at: r.occurred_at.toISOString() }));
  }

  /**
   * One command in one transaction: fold, decide, append.
   * @param {string} orderId
   * @param {{ expectedVersion: number | undefined, created?: boolean }} options  expectedVersion: If-Match (else the version just folded); created: 0
   * @param {RequestMeta} meta
   * @param {(state: any) => Change | { status: number, message: string }} decide  (state is null only for `created`)
   * @returns {Promise<Outcome>}
   */
  command(orderId, options, meta, decide) {
    return withTransaction(this.pool, async (client) => {
      const { state, version } = await this.load(client, orderId);
      if (!state && !options.created) return { status: 404, body: { error: `order ${orderId} not found` } };
      const expected = options.created ? 0 : (options.expectedVersion ?? version);
      // The state the client saw is not the current one: the precondition fails before any rule is checked.
      if (!options.created && expected !== version) return { status: 412, etag: version, body: { error: `order ${orderId} is at version ${version}, not ${expected}` } };
      const change = decide(state);
      if ('status' in change) return { status: change.status, etag: version, body: { error: change.message } };
      const occurredAt = new Date();
      const result = await appendEvents(
        client,
        [{ aggregateType: 'order', aggregateId: orderId, ...change, actorId: meta.actorId, correlationId: meta.requestId, traceId: meta.traceId, occurredAt }],
        { schema: this.schema, expectedVersion: expected },
      );
      // Another request appended since the fold: nothing was written.
      if (result.status === 'conflict')
        return { status: 412, etag: result.currentVersion, body: { error: `order ${orderId} is at version ${result.currentVersion}, not ${expected}` } };
      const appended = result.events[0];
      if (!appended) throw new Error('appendEvents returned no event');
      const next = orderReducer.apply(state, {
        eventId: appended.eventId,
        eventType: change.eventType,
        aggregateType: 'order',
        aggregateId: orderId,
        aggregateVersion: appended.aggregateVersion,
        occurredAt,
        payload: change.payload,
      });
      return { status: options.created ? 201 : 200, etag: appended.aggregateVersion, body: next };
    });
  }
}

/** A fresh W3C trace id (32 hex digits), for requests without a traceparent. */
export const newTraceId = () => randomBytes(16).toString('hex');
