import { OutboxError } from '../../core/errors';
import { backoffDelay, createBackoff, isRetriable } from '../../core/retry';

const pgError = (code: string): Error => Object.assign(new Error(`pg ${code}`), { code });

test('PostgreSQL errors: connection, rollback, resources, lock, operator and system classes are retried; data errors are not', () => {
  for (const code of ['08006', '40001', '40P01', '53100', '53200', '53300', '55P03', '55006', '57014', '57P01', '58030']) {
    expect([code, isRetriable(pgError(code))]).toEqual([code, true]);
  }
  for (const code of ['22P02', '23505', '23502', '42P01', '42501', 'XX000', 'P0001']) {
    expect([code, isRetriable(pgError(code))]).toEqual([code, false]);
  }
  expect(isRetriable(new Error('Connection terminated unexpectedly'))).toBe(true);
  expect(isRetriable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe(true);
});

test('an OutboxError answers by its code; a plain exception of a handler is not retried', () => {
  expect(isRetriable(new OutboxError('DB_UNAVAILABLE', 'x'))).toBe(true);
  expect(isRetriable(new OutboxError('DB_BUSY', 'x'))).toBe(true);
  expect(isRetriable(new OutboxError('REGISTRY_UNAVAILABLE', 'x'))).toBe(true);
  expect(isRetriable(new OutboxError('PAYLOAD_INVALID', 'x'))).toBe(false);
  expect(isRetriable(new OutboxError('FENCED', 'x'))).toBe(false);
  expect(isRetriable(new TypeError("Cannot read properties of undefined (reading 'email')"))).toBe(false);
});

test('kafkajs errors are retried unless no retry can fix them (too large, fenced), also when wrapped', () => {
  const kafka = (type?: string, cause?: unknown): Error =>
    Object.assign(new Error(type ?? 'broker down'), { name: type ? 'KafkaJSProtocolError' : 'KafkaJSConnectionError', type, cause });
  expect(isRetriable(kafka())).toBe(true);
  expect(isRetriable(kafka('NOT_LEADER_FOR_PARTITION'))).toBe(true);
  expect(isRetriable(kafka('MESSAGE_TOO_LARGE'))).toBe(false);
  expect(isRetriable(kafka('PRODUCER_FENCED'))).toBe(false);
  const wrapped = Object.assign(new Error('retries exceeded'), { name: 'KafkaJSNumberOfRetriesExceeded', cause: kafka('RECORD_LIST_TOO_LARGE') });
  expect(isRetriable(wrapped)).toBe(false);
});

test('backoff doubles from 100 ms with jitter between half and full, capped', () => {
  expect(backoffDelay(1, { random: () => 0 })).toBe(50);
  expect(backoffDelay(1, { random: () => 1 })).toBe(100);
  expect(backoffDelay(4, { random: () => 1 })).toBe(800);
  expect(backoffDelay(40, { random: () => 1 })).toBe(10_000);
  const b = createBackoff({ initialMs: 10, maxMs: 40, random: () => 1 });
  expect([b.next(), b.next(), b.next(), b.next()]).toEqual([10, 20, 40, 40]);
  b.reset();
  expect(b.failures).toBe(0);
});
