import { existsSync } from 'node:fs';
import path from 'node:path';
import { errorMessage, OutboxError } from '../core/errors';

/**
 * Components another part of the team is still building (relay/, projector/, writer/) are loaded at run
 * time, so that the CLI builds and the other commands work before they land. A missing module or export
 * is a clear "not available yet" error, never a crash.
 */
const ROOT = path.join(__dirname, '..');

export function hasModule(relative: string): boolean {
  const base = path.join(ROOT, relative);
  return ['.ts', '.js'].some((ext) => existsSync(base + ext));
}

export function optionalExport<T>(relative: string, exportName: string, feature: string): T {
  if (!hasModule(relative)) {
    throw new OutboxError('NOT_FOUND', `${feature} is not available yet: ${relative} is not part of this build`, { details: { module: relative } });
  }
  let mod: Record<string, unknown>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mod = require(path.join(ROOT, relative)) as Record<string, unknown>;
  } catch (err) {
    throw new OutboxError('INTERNAL', `${feature} could not be loaded from ${relative}: ${errorMessage(err).split('\n')[0]}`, { cause: err });
  }
  const value = mod[exportName];
  if (value === undefined) {
    throw new OutboxError('NOT_FOUND', `${feature} is not available yet: ${relative} does not export ${exportName}`, { details: { module: relative, export: exportName } });
  }
  return value as T;
}
