import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { loadConfig, type KilnConfig } from '../src/config.ts';
import { createSandbox, type Sandbox } from '../src/sandbox/index.ts';
import { startKiln, type RunningKiln } from '../src/server/serve.ts';

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- bench-side JSON access

export interface BenchKiln {
  kiln: RunningKiln;
  config: KilnConfig;
  logger: Logger;
  sandbox: Sandbox;
  /** Where workers make job dirs: reachable by the sandbox uids, so not inside the private data dir. */
  workRoot: string;
  /** The local owner's token (for benches that use Kiln's own clients). */
  ownerToken: string;
  /** Calls the API with the local owner's token; throws on a 4xx/5xx. */
  api(method: string, route: string, body?: BodyInit, json?: unknown): Promise<Json>;
  dispose(): Promise<void>;
}

/** A real Kiln with the embedded defaults and no local workers: each bench starts the workers it measures. */
export async function startBenchKiln(name: string): Promise<BenchKiln> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), `kiln-bench-${name}-`));
  const workRoot = await mkdtemp(path.join(os.tmpdir(), 'kiln-bench-jobs-'));
  await chmod(workRoot, 0o755);
  const config = loadConfig({ port: 0, dataDir, workers: 0 }, { KILN_LOG_LEVEL: 'warn' });
  const logger = pino({ level: 'warn' });
  const kiln = await startKiln(config, { logger, logRequests: false });
  const ownerToken = (await readFile(path.join(dataDir, 'local-token'), 'utf8')).trim();
  // The workers' sandbox as `kiln serve` makes it: with its warm pool.
  const sandbox = createSandbox(config.sandbox, { warmPool: config.sandboxWarmPool });
  return {
    kiln,
    config,
    logger,
    sandbox,
    workRoot,
    ownerToken,
    async api(method, route, body, json) {
      const headers: Record<string, string> = { authorization: `Bearer ${ownerToken}` };
      if (json !== undefined) headers['content-type'] = 'application/json';
      const response = await fetch(new URL(route, kiln.url), { method, headers, body: json !== undefined ? JSON.stringify(json) : body });
      const answer = (await response.json()) as Json;
      if (response.status >= 400) throw new Error(`${method} ${route}: ${response.status} ${JSON.stringify(answer)}`);
      return answer;
    },
    async dispose() {
      await sandbox.close?.();
      await kiln.close();
      await rm(dataDir, { recursive: true, force: true });
      await rm(workRoot, { recursive: true, force: true });
    },
  };
}
