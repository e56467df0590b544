/**
 * `kiln serve`, assembled: the API (database, object store, credentials,
 * HTTP, lease sweeper and, inside the API, the local test bed runners; see
 * serve.ts), the local build workers, and the order things stop in. The CLI
 * command only parses flags, loads the configuration and calls this.
 */
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import type { KilnConfig } from '../config.ts';
import { errorMessage } from '../errors.ts';
import { startBuildWorkers, type RunningBuildWorkers } from './build-workers.ts';
import { startKiln, type RunningKiln } from './serve.ts';

export interface RunningServer {
  kiln: RunningKiln;
  /** What the local workers are (or why there are none), for the start-up banner. */
  workerNote: string;
  /** Workers first (their killed jobs are reported while the API still answers), then the API. */
  stop(): Promise<void>;
}

export async function startServer(config: KilnConfig, logger: Logger): Promise<RunningServer> {
  const kiln = await startKiln(config, { logger });
  const workers: RunningBuildWorkers[] = [];
  let workerNote = `${config.localWorkers} local (${config.sandbox} sandbox)`;
  if (config.localWorkers > 0) {
    try {
      workers.push(
        await startBuildWorkers(config, { apiUrl: kiln.url, token: kiln.credentials.workerToken, concurrency: config.localWorkers, workRoot: path.join(os.tmpdir(), 'kiln-jobs'), logger: logger.child({ service: 'kiln-worker' }) }),
      );
    } catch (error) {
      // The API is still useful without a sandbox (another machine's `kiln worker` can build).
      workerNote = `none: the ${config.sandbox} sandbox is unusable here (${errorMessage(error)}); builds stay queued until a worker connects`;
    }
  }
  let stopping: Promise<void> | undefined;
  return {
    kiln,
    workerNote,
    stop() {
      stopping ??= (async () => {
        await Promise.allSettled(workers.map((worker) => worker.stop()));
        await kiln.close();
      })();
      return stopping;
    },
  };
}

/** The start-up banner: where Kiln runs and how to reach it. */
export function describeServer(server: RunningServer, config: KilnConfig, cwd: string): string {
  const { kiln } = server;
  const relative = (file: string) => path.relative(cwd, file) || file;
  const testbed = config.testbed;
  return [
    '',
    `Kiln is running at ${kiln.url}`,
    `  web UI        ${kiln.url}/ (sign in with your token)`,
    `  API docs      ${kiln.url}/docs`,
    `  your token    ${relative(kiln.credentials.ownerTokenFile)} (the kiln CLI on this machine finds it by itself)`,
    `  admin token   ${relative(kiln.credentials.adminTokenFile)}${kiln.credentials.adminTokenCreated ? ' (new)' : ''}`,
    `  data          ${relative(config.dataDir)} (${config.databaseUrl ? 'PostgreSQL' : 'PGlite'}, ${config.objects.kind === 's3' ? 'S3' : 'filesystem'} objects)`,
    `  workers       ${server.workerNote}`,
    `  test bed      ${testbed.localRunners} local runner process(es) × ${testbed.workers} slots${testbed.localRunners === 0 ? '; waiting for `kiln testbed` runners' : ''}`,
    '',
    'Try:  ./bin/kiln --help',
    '',
  ].join('\n');
}
