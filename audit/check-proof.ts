import { createHash, type KeyObject } from 'node:crypto';
import { signedBytes, type SignedCheckpoint } from './checkpoint';
import { keyIdOf, verifyBytes } from './keys';
import { leafHash, rootFromAuditPath } from './merkle';
import { PROOF_FORMAT } from './prove';

/**
 * The offline check of an inclusion proof (docs/hash-chain.md, "Checking a proof"): no database, no
 * Kafka, only the proof's text and the checkpoint signing public key. Checks run from the event up: its
 * hash from its canonical bytes, each later link of the chain to the head, the head's leaf through the
 * Merkle audit path to the checkpoint's root, and the checkpoint's Ed25519 signature. Every field of the
 * proof is checked, so changing any byte of it makes the check fail.
 */

export interface CheckedProof {
  ok: true;
  aggregateType: string;
  aggregateId: string;
  version: string;
  eventId: string;
  /** The event's 13 canonical fields by name (null for NULL). */
  fields: Record<string, string | null>;
  headVersion: string;
  checkpoint: { coveredId: string; timestamp: string; keyId: string; root: string; schema: string };
}

export type ProofCheck = CheckedProof | { ok: false; problem: string };

/** The 13 fields of the canonical encoding, in order. */
export const CANONICAL_FIELDS = [
  'event_id',
  'aggregate_type',
  'aggregate_id',
  'aggregate_version',
  'event_type',
  'schema_version',
  'occurred_at',
  'actor_id',
  'trace_id',
  'correlation_id',
  'causation_id',
  'traceparent',
  'payload',
] as const;

class Bad extends Error {}

const HEX64 = /^[0-9a-f]{64}$/;
const DECIMAL = /^(0|[1-9][0-9]*)$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function object(v: unknown, where: string, keys: readonly string[]): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Bad(`${where} is not an object`);
  const o = v as Record<string, unknown>;
  const have = Object.keys(o).sort();
  const want = [...keys].sort();
  if (have.join('\n') !== want.join('\n')) throw new Bad(`${where} has the fields [${have.join(', ')}], expected [${want.join(', ')}]`);
  return o;
}

function str(o: Record<string, unknown>, k: string, where: string, re?: RegExp): string {
  const v = o[k];
  if (typeof v !== 'string' || (re && !re.test(v))) throw new Bad(`${where}.${k} is missing or malformed`);
  return v;
}

function int(o: Record<string, unknown>, k: string, where: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new Bad(`${where}.${k} is not a non-negative integer`);
  return v;
}

const sha256 = (...parts: Buffer[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** Split canonical bytes into their 13 netstrings (`-,` is NULL); throws Bad when they are not exactly that. */
export function decodeCanonical(bytes: Buffer, where: string): (string | null)[] {
  const out: (string | null)[] = [];
  let i = 0;
  while (i < bytes.length) {
    if (bytes[i] === 0x2d && bytes[i + 1] === 0x2c) {
      out.push(null);
      i += 2;
      continue;
    }
    const colon = bytes.indexOf(0x3a, i);
    const len = colon < 0 ? '' : bytes.subarray(i, colon).toString('latin1');
    if (!DECIMAL.test(len)) throw new Bad(`${where}: not a sequence of netstrings at byte ${i}`);
    const end = colon + 1 + Number(len);
    if (end >= bytes.length || bytes[end] !== 0x2c) throw new Bad(`${where}: netstring at byte ${i} does not end with a comma`);
    out.push(bytes.subarray(colon + 1, end).toString('utf8'));
    i = end + 1;
  }
  if (out.length !== CANONICAL_FIELDS.length) throw new Bad(`${where}: ${out.length} fields, expected ${CANONICAL_FIELDS.length}`);
  return out;
}

function checkpointOf(v: unknown): SignedCheckpoint {
  const where = 'checkpoint';
  const o = object(v, where, ['format', 'schema', 'coveredId', 'eventCount', 'aggregateCount', 'root', 'timestamp', 'keyId', 'signature']);
  if (o.format !== 1) throw new Bad('checkpoint.format is not 1');
  const signature = str(o, 'signature', where, BASE64);
  const sig = Buffer.from(signature, 'base64');
  if (sig.length !== 64 || sig.toString('base64') !== signature) throw new Bad('checkpoint.signature is not the base64 of 64 bytes');
  return {
    format: 1,
    schema: str(o, 'schema', where),
    coveredId: str(o, 'coveredId', where, DECIMAL),
    eventCount: str(o, 'eventCount', where, DECIMAL),
    aggregateCount: int(o, 'aggregateCount', where),
    root: str(o, 'root', where, HEX64),
    timestamp: str(o, 'timestamp', where),
    keyId: str(o, 'keyId', where, /^[0-9a-f]{16}$/),
    signature,
  };
}

function check(text: string, publicKey: KeyObject): CheckedProof {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Bad('the proof is not JSON');
  }
  const p = object(parsed, 'proof', ['format', 'event', 'chain', 'merkle', 'checkpoint']);
  if (p.format !== PROOF_FORMAT) throw new Bad(`proof.format is not "${PROOF_FORMAT}"`);
  const ev = object(p.event, 'event', ['aggregateType', 'aggregateId', 'version', 'eventId', 'canonical', 'prevHash', 'hash']);
  const aggregateType = str(ev, 'aggregateType', 'event');
  const aggregateId = str(ev, 'aggregateId', 'event');
  const version = str(ev, 'version', 'event', DECIMAL);
  const eventId = str(ev, 'eventId', 'event');
  const prevHash = Buffer.from(str(ev, 'prevHash', 'event', HEX64), 'hex');
  const canonical = Buffer.from(str(ev, 'canonical', 'event'), 'utf8');
  const fieldValues = decodeCanonical(canonical, 'event.canonical');
  const expect = [eventId, aggregateType, aggregateId, version];
  expect.forEach((v, i) => {
    if (fieldValues[i] !== v) throw new Bad(`event.canonical: ${CANONICAL_FIELDS[i]} is ${JSON.stringify(fieldValues[i])}, the proof names ${JSON.stringify(v)}`);
  });
  if (version === '0') throw new Bad('event.version is 0');
  if (version === '1' && !prevHash.equals(Buffer.alloc(32))) throw new Bad('event: version 1 must link to the zero hash');
  let hash = sha256(prevHash, canonical);
  if (hash.toString('hex') !== str(ev, 'hash', 'event', HEX64)) throw new Bad(`event: hash ${ev.hash as string} is not SHA-256(prevHash ‖ canonical) = ${hash.toString('hex')}`);

  if (!Array.isArray(p.chain)) throw new Bad('proof.chain is not an array');
  let headVersion = BigInt(version);
  p.chain.forEach((link: unknown, i: number) => {
    const where = `chain[${i}]`;
    const l = object(link, where, ['version', 'canonical', 'hash']);
    const v = str(l, 'version', where, DECIMAL);
    if (BigInt(v) !== headVersion + 1n) throw new Bad(`${where}: version ${v} does not follow version ${headVersion}`);
    const bytes = Buffer.from(str(l, 'canonical', where), 'utf8');
    const f = decodeCanonical(bytes, `${where}.canonical`);
    if (f[1] !== aggregateType || f[2] !== aggregateId || f[3] !== v) throw new Bad(`${where}.canonical is not version ${v} of the same aggregate`);
    hash = sha256(hash, bytes);
    if (hash.toString('hex') !== str(l, 'hash', where, HEX64)) throw new Bad(`${where}: hash is not SHA-256(previous hash ‖ canonical) = ${hash.toString('hex')}`);
    headVersion = BigInt(v);
  });

  const m = object(p.merkle, 'merkle', ['leafIndex', 'treeSize', 'path']);
  const leafIndex = int(m, 'leafIndex', 'merkle');
  const treeSize = int(m, 'treeSize', 'merkle');
  if (!Array.isArray(m.path) || m.path.some((h) => typeof h !== 'string' || !HEX64.test(h))) throw new Bad('merkle.path is not a list of 64-hex-digit hashes');
  const c = checkpointOf(p.checkpoint);
  if (treeSize !== c.aggregateCount) throw new Bad(`merkle.treeSize ${treeSize} is not the checkpoint's aggregateCount ${c.aggregateCount}`);
  const leaf = leafHash({ aggregateType, aggregateId, version: headVersion, hash });
  const root = rootFromAuditPath({ leafHash: leaf, index: leafIndex, treeSize, path: (m.path as string[]).map((h) => Buffer.from(h, 'hex')) });
  if (root === null) throw new Bad(`merkle.path does not fit leaf ${leafIndex} of a tree of ${treeSize}`);
  if (root.toString('hex') !== c.root) throw new Bad(`the Merkle path leads to root ${root.toString('hex')}, not to the checkpoint's root ${c.root}`);

  const keyId = keyIdOf(publicKey);
  if (c.keyId !== keyId) throw new Bad(`the checkpoint names key ${c.keyId}, the public key given is ${keyId}`);
  if (!verifyBytes(publicKey, signedBytes(c), Buffer.from(c.signature, 'base64'))) throw new Bad('the checkpoint signature does not verify');

  return {
    ok: true,
    aggregateType,
    aggregateId,
    version,
    eventId,
    fields: Object.fromEntries(CANONICAL_FIELDS.map((f, i) => [f, fieldValues[i] ?? null])),
    headVersion: headVersion.toString(),
    checkpoint: { coveredId: c.coveredId, timestamp: c.timestamp, keyId: c.keyId, root: c.root, schema: c.schema },
  };
}

/** Check a proof's text against the public key; a proof that does not hold is a returned value naming why. */
export function checkInclusionProof(text: string, publicKey: KeyObject): ProofCheck {
  try {
    return check(text, publicKey);
  } catch (err) {
    if (err instanceof Bad) return { ok: false, problem: err.message };
    throw err;
  }
}
