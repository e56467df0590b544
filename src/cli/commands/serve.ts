import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../../config.ts';
import { createSandbox } from '../../sandbox/index.ts';
import { startKiln } from '../../server/serve.ts';
import { loadTestbedConfig } from '../../testbed/config.ts';
import { startWorker, type RunningWorker } from '../../worker/worker.ts';
import { errorMessage } from '../../errors.ts';
import { SHUTDOWN_SLACK_MS, shutdownThenExit } from '../shutdown.ts';

export function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('expected a port number (0-65535)');
  return port;
}

export function parseCount(value: string): number {
  const count = Number(value);
  if (!Number.isInteger(count) || count < 0 || count > 64) throw new InvalidArgumentError('expected a whole number from 0 to 64');
  return count;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('Run the API and local build workers with embedded defaults (PGlite, filesystem objects)')
    .option('-p, --port <port>', 'port to listen on (env KILN_PORT; default 8080)', parsePort)
    .option('--host <host>', 'address to bind (env KILN_HOST; default 127.0.0.1)')
    .option('-d, --data-dir <dir>', 'where the database, objects and tokens live (env KILN_DATA_DIR; default ./.kiln)')
    .option('-w, --workers <n>', 'local build workers (env KILN_WORKERS; default 2; 0 for an API-only node)', parseCount)
    .option('--sandbox <name>', 'bubblewrap (default) or gvisor (env KILN_SANDBOX)')
    .addHelpText(
      'after',
      `
Environment: DATABASE_URL (a PostgreSQL server instead of PGlite), S3_ENDPOINT, S3_BUCKET,
S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_REGION (S3 instead of the filesystem),
KILN_BUILD_TIMEOUT_MS, KILN_BUILD_MEMORY_BYTES, KILN_BUILD_PIDS, KILN_BUILD_DISK_BYTES,
KILN_BUILD_LOG_BYTES (build limits), KILN_TESTBED_* (test bed runners and limits,
see src/testbed/README.md), KILN_LOG_LEVEL.

Examples:
  kiln serve
  kiln serve --port 9000 --data-dir /var/lib/kiln
  DATABASE_URL=postgres://kiln@db/kiln S3_BUCKET=kiln kiln serve --workers 0`,
    )
    .action(async (flags: { port?: number; host?: string; dataDir?: string; workers?: number; sandbox?: string }) => {
      const config = loadConfig(flags);
      const logger = pino({ level: config.logLevel });
      // A server starts its test bed runners now, so the first invoke does not wait for them (decision 0012).
      process.env.KILN_TESTBED_PREWARM ??= '1';
      const testbed = loadTestbedConfig();
      const kiln = await startKiln(config, { logger });
      const workers: RunningWorker[] = [];
      let workerNote = `${config.localWorkers} local (${config.sandbox} sandbox)`;
      if (config.localWorkers > 0) {
        try {
          const sandbox = createSandbox(config.sandbox, { warmPool: config.sandboxWarmPool });
          await sandbox.check();
          workers.push(
            startWorker({ apiUrl: kiln.url, token: kiln.credentials.workerToken, concurrency: config.localWorkers, sandbox, workRoot: path.join(os.tmpdir(), 'kiln-jobs'), logger: logger.child({ service: 'kiln-worker' }) }),
          );
        } catch (error) {
          workerNote = `none: the ${config.sandbox} sandbox is unusable here (${errorMessage(error)}); builds stay queued until a worker connects`;
        }
      }
      const relative = (file: string) => path.relative(process.cwd(), file) || file;
      process.stdout.write(
        [
          '',
          `Kiln is running at ${kiln.url}`,
          `  web UI        ${kiln.url}/ (sign in with your token)`,
          `  API docs      ${kiln.url}/docs`,
          `  your token    ${relative(kiln.credentials.ownerTokenFile)} (the kiln CLI on this machine finds it by itself)`,
          `  admin token   ${relative(kiln.credentials.adminTokenFile)}${kiln.credentials.adminTokenCreated ? ' (new)' : ''}`,
          `  data          ${relative(config.dataDir)} (${config.databaseUrl ? 'PostgreSQL' : 'PGlite'}, ${config.objects.kind === 's3' ? 'S3' : 'filesystem'} objects)`,
          `  workers       ${workerNote}`,
          `  test bed      ${testbed.localRunners} local runner process(es) × ${testbed.workers} slots${testbed.localRunners === 0 ? '; waiting for `kiln testbed` runners' : ''}`,
          '',
          'Try:  ./bin/kiln --help',
          '',
        ].join('\n'),
      );
      let stopping = false;
      const shutdown = (signal: string) => {
        if (stopping) return;
        stopping = true;
        logger.info({ signal }, 'shutting down');
        // Workers first: their killed jobs are reported to the API while it still answers.
        const stop = async () => {
          await Promise.allSettled(workers.map((worker) => worker.stop()));
          await kiln.close();
        };
        shutdownThenExit(stop, logger, config.shutdownGraceMs + SHUTDOWN_SLACK_MS);
      };
      process.once('SIGINT', () => shutdown('SIGINT'));
      process.once('SIGTERM', () => shutdown('SIGTERM'));
    });
}
