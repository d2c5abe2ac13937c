import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './stack';

// What a team gets from `npm install kafka-outbox`: the tarball `npm pack` makes from a clean copy of the
// checkout (so the build must run by itself before packing), installed into a project of its own.

export interface Run {
  stdout: string;
  stderr: string;
}

/** Run a program to completion (SIGKILL after timeoutMs); rejects with its output when it fails. */
export function run(file: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000, killSignal: 'SIGKILL', maxBuffer: 32 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${file} ${args.join(' ')} failed (${err.message}):\n${stdout}\n${stderr}`));
        else resolve({ stdout, stderr });
      },
    );
  });
}

export const npm = (args: string[], cwd: string, timeoutMs = 60_000): Promise<Run> => run('npm', [...args, '--no-audit', '--no-fund'], { cwd, timeoutMs });

export interface PackedLibrary {
  /** The .tgz `npm pack` wrote into `work`. */
  tarball: string;
  /** The clean copy it was packed from (`<work>/source`). */
  source: string;
  /** Whether the clean copy held a dist/ before packing (it must not: the build runs by itself). */
  sourceHadDist: boolean;
}

/**
 * `npm pack` of a clean copy of the checkout (the files a clone would have: tracked and new, minus
 * .gitignore'd ones such as dist/), written into `work`.
 */
export async function packLibrary(work: string): Promise<PackedLibrary> {
  const source = path.join(work, 'source');
  const { stdout } = await run('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_ROOT });
  for (const rel of new Set(stdout.split('\0').filter((f) => f !== ''))) {
    const from = path.join(REPO_ROOT, rel);
    if (!existsSync(from) || !statSync(from).isFile()) continue;
    mkdirSync(path.dirname(path.join(source, rel)), { recursive: true });
    copyFileSync(from, path.join(source, rel));
  }
  const sourceHadDist = existsSync(path.join(source, 'dist'));
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(source, 'node_modules'), 'dir');
  await npm(['pack', '--pack-destination', work], source, 120_000);
  const packed = readdirSync(work).filter((f) => f.endsWith('.tgz'));
  if (packed.length !== 1) throw new Error(`npm pack wrote ${packed.length} tarballs into ${work}: ${packed.join(', ')}`);
  return { tarball: path.join(work, packed[0]!), source, sourceHadDist };
}

/**
 * `npm install <args>` in `project`, with the checkout's npm settings if it has any: from the local cache
 * when it holds everything, otherwise from the configured registry.
 */
export async function npmInstall(project: string, args: string[] = []): Promise<void> {
  if (existsSync(path.join(REPO_ROOT, '.npmrc')) && !existsSync(path.join(project, '.npmrc'))) copyFileSync(path.join(REPO_ROOT, '.npmrc'), path.join(project, '.npmrc'));
  try {
    await npm(['install', '--offline', ...args], project);
  } catch {
    await npm(['install', '--prefer-offline', ...args], project, 120_000);
  }
}
