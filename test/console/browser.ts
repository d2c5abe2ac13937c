import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BrowserContext } from 'playwright-core';
import { trackRunning } from '../../core/lifecycle';
import { REPO_ROOT } from '../support/stack';

/**
 * Debian's Chromium for the console's browser tests, driven by playwright-core (which never downloads a
 * browser of its own). infra/ensure-browser.sh installs the package when /usr/bin/chromium is missing.
 */
export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/** The Chromium binary, installing it if needed; `{ skip }` names why there is none. */
export function ensureChromium(): { path: string } | { skip: string } {
  try {
    const out = execFileSync('bash', [path.join(REPO_ROOT, 'infra', 'ensure-browser.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
    return { path: out.trim().split('\n').pop()! };
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? err)
      .trim()
      .split('\n')
      .pop();
    return { skip: `Chromium is not installed and could not be installed (${stderr}); browser tests skipped` };
  }
}

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** A headless Chromium with a fresh profile directory (removed on close). */
export async function launchChromium(executablePath: string): Promise<Browser> {
  const { chromium } = require('playwright-core') as typeof import('playwright-core');
  const profile = mkdtempSync(path.join(os.tmpdir(), 'outbox-console-chromium-'));
  const untrack = trackRunning('process', 'chromium');
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 900 },
      timeout: 180_000,
    });
    return {
      context,
      async close() {
        await context.close().catch(() => undefined);
        rmSync(profile, { recursive: true, force: true });
        untrack();
      },
    };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    untrack();
    throw err;
  }
}
