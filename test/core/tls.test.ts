import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TLSSocket } from 'node:tls';
import { loadConfig } from '../../core/config';
import { probeKafka } from '../../core/admin-server';
import { silentLogger } from '../../core/logger';
import { connectClient } from '../../core/pg';

// TLS is verified end to end through the real client code paths (core/pg.ts, core/kafka.ts): a
// self-signed server certificate is refused, the same certificate is accepted once it is the configured
// CA, and a host name that does not match the certificate is refused with sslmode=verify-full.
const dir = mkdtempSync(path.join(os.tmpdir(), 'outbox-tls-'));
const keyFile = path.join(dir, 'key.pem');
const certFile = path.join(dir, 'cert.pem');
execFileSync(
  'openssl',
  ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost'],
  {
    stdio: 'ignore',
  },
);
const key = readFileSync(keyFile);
const cert = readFileSync(certFile);
const servers: Server[] = [];
afterAll(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

/** Answers PostgreSQL's SSLRequest with 'S' then does a TLS handshake; records whether it completed. */
async function fakeTlsPostgres(): Promise<{ port: number; handshakes: () => number; sslRequests: () => number }> {
  let handshakes = 0;
  let sslRequests = 0;
  const server = createServer((socket: Socket) => {
    socket.once('data', (buf) => {
      if (buf.length === 8 && buf.readInt32BE(4) === 80877103) {
        sslRequests++;
        socket.write('S');
        const tls = new TLSSocket(socket, { isServer: true, key, cert });
        tls.on('secure', () => {
          handshakes++;
          tls.destroy();
        });
        tls.on('error', () => socket.destroy());
      } else socket.destroy();
    });
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, handshakes: () => handshakes, sslRequests: () => sslRequests };
}

async function connectError(url: string): Promise<string> {
  try {
    const c = await connectClient(url, silentLogger());
    await c.end();
    return 'connected';
  } catch (err) {
    return (err as Error).message;
  }
}

test('PostgreSQL sslmode=verify-full: self-signed refused, configured CA accepted, wrong host name refused', async () => {
  const pg = await fakeTlsPostgres();
  const base = `postgres://u:pw-tls-1@localhost:${pg.port}/db`;
  const config = loadConfig({ DATABASE_URL: `${base}?sslmode=verify-full` }, { database: true });

  expect(await connectError(config.databaseUrl)).toMatch(/self.signed certificate/i);
  expect(pg.handshakes()).toBe(0);

  // With the CA configured the handshake completes (then the fake server hangs up).
  const withCa = `${base}?sslmode=verify-full&sslrootcert=${encodeURIComponent(certFile)}`;
  expect(await connectError(withCa)).not.toMatch(/certificate|Hostname/i);
  expect(pg.handshakes()).toBe(1);

  // Same CA, but the host name (127.0.0.1) is not in the certificate.
  const wrongHost = `postgres://u:pw-tls-1@127.0.0.1:${pg.port}/db?sslmode=verify-full&sslrootcert=${encodeURIComponent(certFile)}`;
  expect(await connectError(wrongHost)).toMatch(/Hostname\/IP does not match certificate's altnames/);
  expect(pg.handshakes()).toBe(1);
  expect(pg.sslRequests()).toBe(3);
});

test('Kafka TLS: verification is on by default and a CA file makes the certificate trusted', async () => {
  let handshakes = 0;
  const server = createServer((socket) => {
    const tls = new TLSSocket(socket, { isServer: true, key, cert });
    tls.on('secure', () => {
      handshakes++;
      tls.destroy();
    });
    tls.on('error', () => socket.destroy());
    socket.on('error', () => undefined);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;

  const noCa = loadConfig({ KAFKA_BROKERS: `localhost:${port}`, KAFKA_TLS: 'true' }, { kafka: true });
  await expect(probeKafka(noCa.kafka, 2000, silentLogger())).rejects.toThrow(/self.signed certificate/i);
  expect(handshakes).toBe(0);

  const withCa = loadConfig({ KAFKA_BROKERS: `localhost:${port}`, KAFKA_TLS_CA_FILE: certFile }, { kafka: true });
  expect(withCa.kafka.ssl).toMatchObject({ rejectUnauthorized: true });
  await expect(probeKafka(withCa.kafka, 2000, silentLogger())).rejects.toThrow(); // the fake broker hangs up after the handshake
  expect(handshakes).toBe(1);
});
