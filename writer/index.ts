/** The write path: append events in the caller's transaction, and verify the per-aggregate hash chain. */
export { withTransaction } from '../core/pg';
export { appendEvents, validateNewEvent, type NewEvent, type AppendOptions, type AppendResult, type AppendedEvent } from './append';
export {
  canonicalEncoding,
  canonicalJsonb,
  canonicalTimestamp,
  computeHash,
  verifyEventLink,
  toHashBuffer,
  ZERO_HASH,
  type ChainFields,
  type LinkEvent,
  type LinkResult,
  type EventEnvelope,
} from '../event';
export { verifyChain, type VerifyChainOptions, type VerifyChainResult, type BrokenLink } from './verify';
