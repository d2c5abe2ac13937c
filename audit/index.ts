export { merkleRoot, merkleRootOfLeaves, leafBytes, leafHash, compareHeads, auditPath, rootFromAuditPath, type AggregateHead } from './merkle';
export { buildInclusionProof, latestCheckpoint, PROOF_FORMAT, type InclusionProof } from './prove';
export { checkInclusionProof, decodeCanonical, CANONICAL_FIELDS, type ProofCheck, type CheckedProof } from './check-proof';
export { generateSigningKey, loadSigningKey, loadPublicKey, parsePrivateKey, keyIdOf, type SigningKey, type GeneratedKey } from './keys';
export {
  takeCheckpoint,
  takeCheckpointWithHeads,
  firstHeadDifference,
  historyAt,
  stableCoveredId,
  signCheckpoint,
  signedBytes,
  verifyCheckpointSignature,
  parseCheckpoint,
  type Checkpoint,
  type SignedCheckpoint,
  type HistoryAt,
} from './checkpoint';
export {
  checkpointTopic,
  ensureCheckpointTopic,
  publishCheckpoint,
  appendCheckpointFile,
  isCheckpointFile,
  readCheckpointFile,
  readCheckpointTopic,
  type StoredCheckpoint,
} from './checkpoint-store';
export { verifyCheckpoints, type CheckpointsResult, type CheckpointProblem } from './verify-checkpoints';
export { crossCheckKafka, type KafkaCrossCheckResult, type PublishedDifference } from './kafka-cross-check';
export { readTopicsToEnd } from './read-topic';
