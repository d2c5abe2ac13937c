/**
 * Secret redaction for everything that leaves the process as text: log lines, error messages, CLI output.
 * Two mechanisms: known secret values registered at start-up (the configured passwords) are replaced
 * wherever they appear, and any `scheme://user:password@host` URL has its password masked.
 */
const MASK = '***';
const knownSecrets = new Set<string>();

/** Remember a secret value so that `redact` masks it wherever it appears. Values shorter than 4 chars are ignored. */
export function registerSecret(value: string | undefined): void {
  if (value !== undefined && value.length >= 4) knownSecrets.add(value);
}

const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*:)([^@\s/]+)@/gi;
const KEY_VALUE = /\b(password|passwd|pwd|secret|token|api[_-]?key)(\s*[=:]\s*)("?)([^\s"&,;]+)/gi;

export function redact(text: string): string {
  let out = text.replace(URL_PASSWORD, `$1${MASK}@`).replace(KEY_VALUE, `$1$2$3${MASK}`);
  for (const secret of knownSecrets) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
    const encoded = encodeURIComponent(secret);
    if (encoded !== secret && out.includes(encoded)) out = out.split(encoded).join(MASK);
  }
  return out;
}

/** Deep copy of a value with every string redacted (for log objects and JSON output). */
export function redactDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    const out: Record<string, unknown> = { type: value.name, message: redact(value.message) };
    if (value.stack) out.stack = redact(value.stack);
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    if (value.cause !== undefined) out.cause = redactDeep(value.cause, depth + 1);
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1));
  if (Buffer.isBuffer(value) || value instanceof Date) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = /password|secret|token|sasl|authorization/i.test(k) && typeof v === 'string' ? MASK : redactDeep(v, depth + 1);
  }
  return out;
}
