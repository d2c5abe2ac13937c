import type { KeyObject } from 'node:crypto';
import type pg from 'pg';
import { firstHeadDifference, historyAt, verifyCheckpointSignature } from './checkpoint';
import { merkleRoot } from './merkle';
import type { StoredCheckpoint } from './checkpoint-store';

/** One checkpoint that does not hold. */
export interface CheckpointProblem {
  /** Where the checkpoint was read (file:line or topic/partition@offset). */
  where: string;
  coveredId?: string;
  timestamp?: string;
  problem: string;
  /** The first aggregate and version that differs, when the checkpoint's heads were kept beside it (a file written with heads). */
  aggregateType?: string;
  aggregateId?: string;
  version?: string;
}

export interface CheckpointsResult {
  ok: boolean;
  checked: number;
  problems: CheckpointProblem[];
}

/**
 * Check every checkpoint: readable, of this schema, signed by the given public key, and reproduced by
 * the current history (Merkle root, event and aggregate counts at its covered id). A rewrite of any
 * event at or below a checkpoint's covered id changes a head as of that id, so the root differs even
 * when the chain and outbox_aggregates were recomputed.
 */
export async function verifyCheckpoints(
  pool: pg.Pool,
  options: { schema: string; checkpoints: StoredCheckpoint[]; publicKey: KeyObject; keyId: string },
): Promise<CheckpointsResult> {
  const problems: CheckpointProblem[] = [];
  let checked = 0;
  for (const s of options.checkpoints) {
    if ('unreadable' in s) {
      problems.push({ where: s.where, problem: `unreadable: ${s.unreadable}` });
      continue;
    }
    const c = s.checkpoint;
    checked++;
    const base = { where: s.where, coveredId: c.coveredId, timestamp: c.timestamp };
    if (c.schema !== options.schema) {
      problems.push({ ...base, problem: `is of schema "${c.schema}", not "${options.schema}"` });
      continue;
    }
    if (c.keyId !== options.keyId || !verifyCheckpointSignature(c, options.publicKey)) {
      problems.push({ ...base, problem: c.keyId !== options.keyId ? `signed by key ${c.keyId}, not by the given public key ${options.keyId}` : 'signature does not verify' });
      continue;
    }
    const at = await historyAt(pool, { schema: options.schema, coveredId: BigInt(c.coveredId) });
    const differs: string[] = [];
    if (at.eventCount.toString() !== c.eventCount) differs.push(`event count ${c.eventCount} signed, ${at.eventCount} now`);
    if (at.heads.length !== c.aggregateCount) differs.push(`aggregate count ${c.aggregateCount} signed, ${at.heads.length} now`);
    if (at.root.toString('hex') !== c.root) differs.push(`root ${c.root} signed, ${at.root.toString('hex')} recomputed`);
    if (differs.length === 0) continue;
    const problem = `history up to outbox id ${c.coveredId} was changed: ${differs.join('; ')}`;
    if (s.heads && merkleRoot(s.heads).toString('hex') === c.root) {
      const d = firstHeadDifference(s.heads, at.heads);
      if (d) {
        problems.push({
          ...base,
          aggregateType: d.aggregateType,
          aggregateId: d.aggregateId,
          version: d.version.toString(),
          problem: `${problem}; first difference at ${d.aggregateType}/${d.aggregateId} v${d.version}: ${d.detail}`,
        });
        continue;
      }
    }
    problems.push({ ...base, problem: s.heads ? `${problem} (the heads kept beside it do not give its signed root)` : problem });
  }
  return { ok: problems.length === 0, checked, problems };
}
