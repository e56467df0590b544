/**
 * Build workers as a process runs them: `kiln worker` on its own machine, or
 * the local workers of `kiln serve`. Everything a build needs from the
 * configuration (sandbox, toolchains, fetch registries) is taken from the
 * KilnConfig loaded at start and passed down; nothing below reads the
 * environment.
 */
import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { KilnConfig } from '../config.ts';
import { createLanguages, type LanguageRegistry } from '../languages/index.ts';
import { PlatformError } from '../errors.ts';
import { createSandbox } from '../sandbox/index.ts';
import { firstClosedDirectory } from '../sandbox/reach.ts';
import type { Sandbox } from '../sandbox/sandbox.ts';
import { startWorker, type RunningWorker } from '../worker/worker.ts';

/** The part of the configuration a build worker uses. */
export type WorkerSettings = Pick<KilnConfig, 'sandbox' | 'sandboxWarmPool' | 'sandboxCacheDir' | 'toolchains' | 'fetch' | 'dependencyCache'>;

export interface BuildWorkerOptions {
  apiUrl: string;
  token: string;
  concurrency: number;
  workRoot: string;
  logger: Logger;
}

export interface RunningBuildWorkers {
  worker: RunningWorker;
  sandbox: Sandbox;
  /** Running jobs are killed and reported for a retry; then the sandbox's warm pool is released. */
  stop(): Promise<void>;
}

export function languagesFor(settings: Pick<KilnConfig, 'toolchains'>): LanguageRegistry {
  return createLanguages({ rust: { toolchainsDir: settings.toolchains.rust }, javascript: { toolchainDir: settings.toolchains.javascript } });
}

/** Checks the sandbox works here and can reach the work root (a clear error if not) and starts the worker loop. */
export async function startBuildWorkers(settings: WorkerSettings, options: BuildWorkerOptions): Promise<RunningBuildWorkers> {
  await checkWorkRoot(settings, options.workRoot);
  const sandbox = createSandbox(settings.sandbox, { warmPool: settings.sandboxWarmPool, cacheDir: settings.sandboxCacheDir });
  try {
    await sandbox.check();
  } catch (error) {
    await sandbox.close?.();
    throw error;
  }
  const worker = startWorker({ ...options, sandbox, fetch: settings.fetch, languages: languagesFor(settings), dependencyCache: settings.dependencyCache });
  return {
    worker,
    sandbox,
    async stop() {
      await worker.stop();
      await sandbox.close?.();
    },
  };
}

/** bubblewrap runs builds as uids of their own, which must reach the job directories under the work root. */
async function checkWorkRoot(settings: WorkerSettings, workRoot: string): Promise<void> {
  await mkdir(workRoot, { recursive: true, mode: 0o755 });
  if (settings.sandbox !== 'bubblewrap') return;
  const closed = await firstClosedDirectory(workRoot);
  if (closed) {
    throw new PlatformError('work_root_unreachable', `the sandbox's users cannot reach the work directory ${workRoot}: ${closed} lets no other user search it (give it o+x, or choose another --work-dir)`);
  }
}
