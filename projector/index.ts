/**
 * The projector: consumes the relay's topics into PostgreSQL read models with an exactly-once effect,
 * keeps the verified audit trail and aggregate snapshots, and rebuilds projections from Kafka with an
 * atomic swap. See README.md "## Projector".
 */
export {
  startProjector,
  builtInProjections,
  topicOf,
  type StartProjectorOptions,
  type RunningProjector,
  type PartitionLag,
  type BuiltInProjectionsOptions,
} from './start-projector';
export { rebuildProjection, tableChecksum, type RebuildOptions, type RebuildProgress, type RebuildResult, type ComparisonReport, type TableComparison } from './rebuild-shadow';
export { loadAggregate, foldAggregate, takeSnapshot, SNAPSHOT_PROJECTION, type LoadAggregateOptions, type LoadedAggregate, type TakeSnapshotOptions } from './load-aggregate';
export {
  defineProjection,
  defineReducer,
  toProjection,
  projectionFromDefinition,
  isDefinedProjection,
  type ProjectionDefinition,
  type DefinedProjection,
  type ProjectionSource,
  type ProjectionHandler,
  type HandlerContext,
  type TableDefinition,
  type ReducerDefinition,
} from './define';
export { readProjectionLag, projectionStatus } from './report-lag';
export { projectorMetrics, type ProjectorMetrics } from './metrics';
export { createAuditLogProjection, checkLink, type AuditLogOptions, type ChainStatus } from './projections/audit-log';
export { applyAndCheckpoint, type ApplyTarget, type ApplyResult } from './apply-and-checkpoint';
export { dlqTopicOf, deadLetterHeaders, type DeadLetter } from './dead-letter';
export { generationSchema } from './ensure-generation';
export type { DecodeOutcome, EventDecoderLike, DeadLetterKind } from './decode-message';
export type * from './types';
