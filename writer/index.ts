/** The write path: append events in the caller's transaction, and verify the per-aggregate hash chain. */
export {
  appendEvents,
  withTransaction,
  validateNewEvent,
  type NewEvent,
  type AppendOptions,
  type AppendResult,
  type AppendedEvent,
} from './append';
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
} from './canonical';
export { verifyChain, type VerifyChainOptions, type VerifyChainResult, type BrokenLink } from './verify';
