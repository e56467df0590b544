import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { packDirectory } from '../../src/archive/pack.ts';
import { createSandbox } from '../../src/sandbox/index.ts';
import { startWorker, type RunningWorker } from '../../src/worker/worker.ts';
import { versionForm } from './archives.ts';
import { call, type TestKiln } from './kiln.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

export const EXAMPLES = path.resolve(import.meta.dirname, '../../examples');

export interface TestWorkers extends RunningWorker {
  /** Where their job directories and dependency cache are: this set's own, removed by `stop`. */
  workRoot: string;
}

/** Real workers with the real bubblewrap sandbox, exactly as `kiln serve` starts them. */
export function startTestWorkers(t: TestKiln, concurrency = 1): TestWorkers {
  const workRoot = mkdtempSync(path.join(os.tmpdir(), 'kiln-test-jobs-'));
  chmodSync(workRoot, 0o755); // mkdtemp's 0700 would keep the sandbox's uids out of their own job directories
  const worker = startWorker({
    apiUrl: t.url,
    token: t.workerToken,
    concurrency,
    sandbox: createSandbox('bubblewrap'),
    workRoot,
    logger: pino({ level: 'warn' }),
    heartbeatMs: 500,
  });
  return {
    workRoot,
    async stop() {
      await worker.stop();
      rmSync(workRoot, { recursive: true, force: true });
    },
  };
}

/** Packs a directory as the CLI would and uploads it as a new version. */
export async function deployDirectory(t: TestKiln, appId: string, dir: string, metadata: Record<string, unknown>): Promise<Json> {
  const { archive } = await packDirectory(dir);
  const answer = await call<Json>(t.url, 'POST', `/v1/applications/${appId}/versions`, { token: t.ownerToken, body: versionForm(metadata, archive) });
  if (answer.status !== 202) throw new Error(`upload refused: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

/** Polls until the build ends (tests have their own timeouts). */
export async function waitForBuild(t: TestKiln, buildId: string): Promise<Json> {
  while (true) {
    const build = await call<Json>(t.url, 'GET', `/v1/builds/${buildId}`, { token: t.ownerToken });
    if (['succeeded', 'failed', 'crashed', 'cancelled'].includes(build.body.state)) return build.body;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export async function buildLog(t: TestKiln, buildId: string): Promise<string> {
  return String((await call(t.url, 'GET', `/v1/builds/${buildId}/logs`, { token: t.ownerToken })).body);
}
