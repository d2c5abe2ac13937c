/**
 * kafka-outbox: the API services use to append events to the outbox in their own transaction.
 */
export { OutboxError, type OutboxErrorCode } from './core/errors';
export * from './writer';
