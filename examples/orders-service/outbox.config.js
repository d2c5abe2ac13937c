// @ts-check
// The orders service's domain, declared for the `outbox` commands (relay, project, rebuild, audit,
// schemas, status): its Avro schemas, the upcaster of its one breaking change, its two read models and
// the reducer of the `order` aggregate. Connections (DATABASE_URL, KAFKA_BROKERS, SCHEMA_REGISTRY_URL)
// come from the environment.
import { defineConfig } from 'kafka-outbox';
import { orderReducer } from './order.js';
import { customerTotalsProjection } from './projections/customer-totals.js';
import { ordersProjection } from './projections/orders.js';
import { upcastOrderLinesSetV1 } from './upcasters.js';

export default defineConfig({
  schemasDir: './schemas',
  upcasters: { OrderLinesSet: { 1: upcastOrderLinesSetV1 } },
  projections: [ordersProjection, customerTotalsProjection],
  reducers: [orderReducer],
});
