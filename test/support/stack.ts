import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { readEnvironment, type Env } from '../../core/config';

export const REPO_ROOT = path.resolve(__dirname, '../..');
const NAMES = ['DATABASE_URL', 'KAFKA_BROKERS', 'SCHEMA_REGISTRY_URL'] as const;

/**
 * The servers the tests talk to. If DATABASE_URL, KAFKA_BROKERS and SCHEMA_REGISTRY_URL are all set in
 * the environment, those are used (an existing stack). With OUTBOX_TEST_DOCKER=1 the three servers are
 * started with testcontainers. Otherwise the local stack is brought up (`infra/stack.sh up`, idempotent)
 * and its .stack/env is read.
 */
export async function ensureStack(): Promise<Env> {
  if (NAMES.every((n) => process.env[n])) return process.env;
  if (process.env.OUTBOX_TEST_DOCKER === '1') {
    const { startContainers } = await import('./containers');
    return { ...process.env, ...(await startContainers()) };
  }
  execFileSync('bash', [path.join(REPO_ROOT, 'infra/stack.sh'), 'up'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const env = readEnvironment({ ...process.env, OUTBOX_ENV_FILE: path.join(REPO_ROOT, '.stack/env') });
  for (const n of NAMES) if (!env[n]) throw new Error(`the stack did not provide ${n}`);
  return env;
}
