import { logLevel } from 'kafkajs';
import { consumerCrashLevel, kafkaLogLevel } from '../../core/kafka';

// How kafkajs's log entries map to pino levels: kafkajs's own retried steps that are routine on a healthy
// cluster (a coordinator loading on a fresh cluster's first transaction) are not warnings; other error
// responses and real errors still are.
const response = (error: string) => ({ namespace: 'Connection', level: logLevel.ERROR, log: { message: 'Response InitProducerId(key: 22, version: 1)', error, timestamp: '' } });

test('a coordinator loading or moving is routine (info); other broker error responses stay warnings', () => {
  expect(kafkaLogLevel(response("The coordinator is loading and hence can't process requests for this group"))).toBe('info');
  expect(kafkaLogLevel(response('The group coordinator is not available'))).toBe('info');
  expect(kafkaLogLevel(response('This is not the correct coordinator for this group'))).toBe('info');
  expect(kafkaLogLevel(response('This server does not host this topic-partition'))).toBe('warn');
  expect(kafkaLogLevel(response('Producer attempted an operation with an old epoch'))).toBe('warn');
});

test('expected at-least-once and transaction-marker notices are debug; kafkajs errors and warnings keep their level', () => {
  expect(kafkaLogLevel({ namespace: 'Producer', level: logLevel.WARN, log: { message: 'Limiting retries for the idempotent producer to 1', timestamp: '' } })).toBe('debug');
  expect(
    kafkaLogLevel({
      namespace: 'Connection',
      level: logLevel.ERROR,
      log: {
        message: 'Response AddPartitionsToTxn(key: 24, version: 1)',
        error: 'There is a newer producer with the same transactionalId which fences the current one; concurrent operation on the same transaction',
        timestamp: '',
      },
    }),
  ).toBe('debug');
  expect(kafkaLogLevel({ namespace: 'Consumer', level: logLevel.ERROR, log: { message: 'Crash: KafkaJSNumberOfRetriesExceeded', timestamp: '' } })).toBe('error');
  expect(kafkaLogLevel({ namespace: 'Consumer', level: logLevel.WARN, log: { message: 'something odd', timestamp: '' } })).toBe('warn');
  expect(kafkaLogLevel({ namespace: 'Consumer', level: logLevel.INFO, log: { message: 'Starting', timestamp: '' } })).toBe('debug');
});

// A consumer that crashes on a routine coordinator answer (a fresh cluster's group coordinator still
// loading) is restarted by kafkajs: that is not an error (seen in CI: the example's projector logged
// three error lines for it on a freshly started stack).
test("a consumer's crash on a routine coordinator answer, and kafkajs's restart of it, are info", () => {
  const crash = (message: string) => ({ namespace: 'Consumer', level: logLevel.ERROR, log: { message, timestamp: '' } });
  expect(kafkaLogLevel(crash("Crash: KafkaJSProtocolError: The coordinator is loading and hence can't process requests for this group"))).toBe('info');
  expect(kafkaLogLevel(crash('Restarting the consumer in 200ms'))).toBe('info');
  expect(kafkaLogLevel(crash('Crash: KafkaJSNonRetriableError: Invalid topic'))).toBe('error');
});

test("the level of our own line about a consumer's crash: info when routine and restarted, warn when restarted, error when for good", () => {
  const loading = Object.assign(new Error("The coordinator is loading and hence can't process requests for this group"), { name: 'KafkaJSProtocolError' });
  expect(consumerCrashLevel({ error: loading, restart: true })).toBe('info');
  expect(consumerCrashLevel({ error: new Error('Connection timeout'), restart: true })).toBe('warn');
  expect(consumerCrashLevel({ error: loading, restart: false })).toBe('error');
});
