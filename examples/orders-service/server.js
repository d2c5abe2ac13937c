// @ts-check
// The orders service: `node server.js`. Reads DATABASE_URL, OUTBOX_SCHEMA (default outbox),
// OUTBOX_PROJECTOR_SCHEMA (default <OUTBOX_SCHEMA>_read), HOST (default 127.0.0.1) and PORT (default
// 3000; 0 picks a free one). Stops on SIGTERM/SIGINT after the requests in flight.
import { createServer } from 'node:http';
import pg from 'pg';
import { createHandler } from './http.js';
import { OrdersService } from './service.js';

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error('orders-service: DATABASE_URL is not set');
  process.exit(1);
}
const schema = process.env.OUTBOX_SCHEMA ?? 'outbox';
const pool = new pg.Pool({ connectionString: databaseUrl, max: 10, application_name: 'orders-service' });
pool.on('error', (err) => console.error(`orders-service: idle connection failed: ${err.message}`));
const service = new OrdersService({ pool, schema, projectorSchema: process.env.OUTBOX_PROJECTOR_SCHEMA ?? `${schema}_read` });
const server = createServer(createHandler(service, { log: (line) => console.error(line) }));

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1', () => {
  const address = server.address();
  const where = typeof address === 'object' && address ? `http://${address.address}:${address.port}` : String(address);
  console.log(`orders-service listening on ${where}`);
});

const stop = () => {
  server.close(() => {
    pool.end().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
  server.closeIdleConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
