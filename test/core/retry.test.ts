import { OutboxError } from '../../core/errors';
import { backoffDelay, createBackoff, isRetriable, retry } from '../../core/retry';
import { settleWithin, waitFor } from '../../core/wait';

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

test('retry tries again what retryIf accepts, with the policy backoff, and reports each failure before its wait', async () => {
  const seen: Array<{ attempt: number; delayMs: number; retriable: boolean }> = [];
  let calls = 0;
  const value = await retry(
    async (n) => {
      calls++;
      if (n < 3) throw new OutboxError('DB_UNAVAILABLE', 'down');
      return n;
    },
    { policy: { initialMs: 1, maxMs: 2 }, random: () => 1, onRetry: ({ attempt, delayMs, retriable }) => seen.push({ attempt, delayMs, retriable }) },
  );
  expect(value).toBe(3);
  expect(calls).toBe(3);
  expect(seen).toEqual([
    { attempt: 1, delayMs: 1, retriable: true },
    { attempt: 2, delayMs: 2, retriable: true },
  ]);
});

test('retry throws at once what is not retriable, and the last failure when the policy allows no more attempts', async () => {
  let calls = 0;
  const bad = new OutboxError('PAYLOAD_INVALID', 'bad');
  await expect(retry(async () => (calls++, Promise.reject(bad)), { policy: { initialMs: 1, maxMs: 1 } })).rejects.toBe(bad);
  expect(calls).toBe(1);
  calls = 0;
  const down = new OutboxError('KAFKA_UNAVAILABLE', 'down');
  await expect(retry(async () => (calls++, Promise.reject(down)), { policy: { initialMs: 1, maxMs: 1, maxAttempts: 3 } })).rejects.toBe(down);
  expect(calls).toBe(3);
});

test('retry stops with SHUTDOWN when its signal aborts during a wait, or when cancelled before an attempt', async () => {
  const stop = new AbortController();
  const down = new OutboxError('DB_UNAVAILABLE', 'down');
  const stopped = retry(() => Promise.reject(down), { policy: { initialMs: 60_000, maxMs: 60_000 }, signal: stop.signal });
  setTimeout(() => stop.abort(), 10);
  await expect(stopped).rejects.toMatchObject({ code: 'SHUTDOWN', cause: down });
  let calls = 0;
  await expect(retry(async () => ++calls, { cancelled: () => true })).rejects.toMatchObject({ code: 'SHUTDOWN' });
  expect(calls).toBe(0);
});

test('waitFor checks until true, waiting between checks, and throws its own error when the time is up', async () => {
  let checks = 0;
  expect(await waitFor(async () => ++checks === 3, { timeoutMs: 5_000, every: 1, timedOut: () => new Error('late') })).toBe(true);
  expect(checks).toBe(3);
  const started = Date.now();
  await expect(waitFor(async () => false, { timeoutMs: 50, every: { initialMs: 10, maxMs: 20 }, timedOut: () => new OutboxError('DB_BUSY', 'late') })).rejects.toMatchObject({
    code: 'DB_BUSY',
  });
  expect(Date.now() - started).toBeLessThan(1_000);
});

test('waitFor ends early, answering false, when its signal aborts', async () => {
  const stop = new AbortController();
  setTimeout(() => stop.abort(), 20);
  expect(await waitFor(async () => false, { timeoutMs: 60_000, every: 10_000, signal: stop.signal, timedOut: () => new Error('late') })).toBe(false);
});

test('settleWithin waits for the work, or no longer than the bound, and ignores its outcome', async () => {
  await settleWithin(Promise.reject(new Error('ignored')), 1_000);
  const started = Date.now();
  await settleWithin(new Promise(() => undefined), 30);
  expect(Date.now() - started).toBeLessThan(1_000);
});
