/**
 * kafka-outbox: the API services use to append events to the outbox in their own transaction, and the
 * helpers a config module declares its domain with (defineConfig, defineProjection, defineReducer).
 */
export { OutboxError, type OutboxErrorCode } from './core/errors';
export * from './writer';
export { defineConfig, type OutboxDomainConfig } from './cli/define-config';
export {
  defineProjection,
  defineReducer,
  type ProjectionDefinition,
  type DefinedProjection,
  type ProjectionHandler,
  type HandlerContext,
  type TableDefinition,
  type ReducerDefinition,
} from './projector/define';
export type { AggregateReducer, ReducibleEvent } from './projector/types';
export type { DecodedEvent } from './event/envelope';
export type { Upcaster, UpcasterMap } from './schemas/upcasters';
