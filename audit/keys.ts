import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { OutboxError } from '../core/errors';
import { registerSecret } from '../core/redact';

/**
 * The checkpoint signing key: Ed25519 (node:crypto). The private key lives in a file (PKCS#8 PEM, mode
 * 0600) or in OUTBOX_AUDIT_PRIVATE_KEY, never in PostgreSQL; the public key (SPKI PEM) is what an
 * auditor needs. A key id is the first 16 hex digits of SHA-256 over the raw 32-byte public key.
 */

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
}

/** The raw 32 bytes of an Ed25519 public key (the end of its SPKI DER form). */
function rawPublicKey(publicKey: KeyObject): Buffer {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return der.subarray(der.length - 32);
}

export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(publicKey)).digest('hex').slice(0, 16);
}

function requireEd25519(key: KeyObject, where: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new OutboxError('CONFIG_INVALID', `${where} is a ${key.asymmetricKeyType ?? key.type} key, not an Ed25519 key (create one with "outbox audit keygen")`, {
      details: { variable: where },
    });
  }
  return key;
}

/** A private key from PEM text (or base64 PKCS#8 DER); `where` names its source in errors (never its value). */
export function parsePrivateKey(text: string, where: string): SigningKey {
  // Masked wherever it would appear in a log line or an error: the whole text and each line of its body
  // (a log line may carry it JSON-escaped, with its newlines as \n).
  registerSecret(text.trim());
  for (const line of text.split(/\r?\n/)) if (line.trim().length >= 16 && !line.startsWith('-----')) registerSecret(line.trim());
  let privateKey: KeyObject;
  try {
    privateKey = text.includes('-----BEGIN')
      ? createPrivateKey({ key: text, format: 'pem' })
      : createPrivateKey({ key: Buffer.from(text.trim(), 'base64'), format: 'der', type: 'pkcs8' });
  } catch {
    throw new OutboxError('CONFIG_INVALID', `${where} is not a readable private key (PKCS#8 PEM or base64 DER)`, { details: { variable: where } });
  }
  requireEd25519(privateKey, where);
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: keyIdOf(publicKey) };
}

function readText(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new OutboxError('CONFIG_INVALID', `${what} ${file} cannot be read: ${(err as Error).message}`, { cause: err, details: { file } });
  }
}

/** The signing key from a file, else from the environment's key text (OUTBOX_AUDIT_PRIVATE_KEY). */
export function loadSigningKey(source: { file?: string; text?: string; fileVariable?: string; textVariable?: string }): SigningKey {
  if (source.file !== undefined) return parsePrivateKey(readText(source.file, 'private key file'), source.fileVariable ?? source.file);
  if (source.text !== undefined) return parsePrivateKey(source.text, source.textVariable ?? 'OUTBOX_AUDIT_PRIVATE_KEY');
  throw new OutboxError(
    'CONFIG_INVALID',
    'no checkpoint signing key: pass --private-key <file>, or set OUTBOX_AUDIT_PRIVATE_KEY_FILE or OUTBOX_AUDIT_PRIVATE_KEY (create one with "outbox audit keygen")',
    {
      details: { variable: 'OUTBOX_AUDIT_PRIVATE_KEY' },
    },
  );
}

/** A public key from a PEM file (SPKI), or the public half of a private key file. */
export function loadPublicKey(file: string): { publicKey: KeyObject; keyId: string } {
  const text = readText(file, 'public key file');
  let key: KeyObject;
  try {
    key = createPublicKey(text);
  } catch {
    throw new OutboxError('CONFIG_INVALID', `public key file ${file} is not a readable public key (SPKI PEM)`, { details: { file } });
  }
  requireEd25519(key, file);
  return { publicKey: key, keyId: keyIdOf(key) };
}

export interface GeneratedKey {
  privateKeyFile: string;
  publicKeyFile: string;
  publicKeyPem: string;
  keyId: string;
}

/**
 * A new Ed25519 key pair: the private key to `out` (mode 0600, refused if the file exists), the public
 * key to `<out>.pub` (or `publicOut`).
 */
export function generateSigningKey(options: { out: string; publicOut?: string }): GeneratedKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const privatePem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const publicKeyFile = options.publicOut ?? `${options.out}.pub`;
  try {
    writeFileSync(options.out, privatePem, { mode: 0o600, flag: 'wx' });
    writeFileSync(publicKeyFile, publicKeyPem, { mode: 0o644, flag: 'wx' });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new OutboxError('USAGE', e.code === 'EEXIST' ? `${e.path ?? options.out} already exists: refusing to overwrite a key` : `cannot write the key: ${e.message}`, {
      cause: err,
    });
  }
  return { privateKeyFile: options.out, publicKeyFile, publicKeyPem, keyId: keyIdOf(publicKey) };
}

export function signBytes(key: SigningKey, message: Buffer): Buffer {
  return sign(null, message, key.privateKey);
}

export function verifyBytes(publicKey: KeyObject, message: Buffer, signature: Buffer): boolean {
  try {
    return verify(null, message, publicKey, signature);
  } catch {
    return false;
  }
}
