import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../../config.ts';
import { createSandbox } from '../../sandbox/index.ts';
import { startWorker } from '../../worker/worker.ts';
import { SHUTDOWN_SLACK_MS, shutdownThenExit } from '../shutdown.ts';
import { parseCount } from './serve.ts';

export function workerCommand(): Command {
  return new Command('worker')
    .description('Run build workers against a Kiln API (needs only its URL and a worker token)')
    .requiredOption('--api <url>', 'the API base URL (env KILN_URL)', process.env.KILN_URL)
    .requiredOption('--token <token>', 'a worker token (env KILN_WORKER_TOKEN)', process.env.KILN_WORKER_TOKEN)
    .option('-c, --concurrency <n>', 'builds at once', parseCount, 1)
    .option('--sandbox <name>', 'bubblewrap or gvisor', process.env.KILN_SANDBOX ?? 'bubblewrap')
    .option('--work-dir <dir>', 'where job directories are made', path.join(os.tmpdir(), 'kiln-worker'))
    .addHelpText('after', '\nExample:\n  kiln worker --api https://kiln.internal:8080 --token "$KILN_WORKER_TOKEN" --concurrency 2')
    .action(async (flags: { api: string; token: string; concurrency: number; sandbox: string; workDir: string }) => {
      if (flags.sandbox !== 'bubblewrap' && flags.sandbox !== 'gvisor') throw new Error(`--sandbox must be bubblewrap or gvisor, not ${flags.sandbox}`);
      new URL(flags.api); // throws a clear "Invalid URL" before any work
      const logger = pino({ level: process.env.KILN_LOG_LEVEL ?? 'info', base: { service: 'kiln-worker' } });
      const sandbox = createSandbox(flags.sandbox, { warmPool: loadConfig({}, { KILN_SANDBOX_WARM_POOL: process.env.KILN_SANDBOX_WARM_POOL }).sandboxWarmPool });
      await sandbox.check();
      const worker = startWorker({ apiUrl: flags.api, token: flags.token, concurrency: Math.max(1, flags.concurrency), sandbox, workRoot: path.join(flags.workDir, 'jobs'), logger });
      logger.info({ api: flags.api, concurrency: flags.concurrency, sandbox: flags.sandbox }, 'worker started');
      const stop = () => {
        logger.info('stopping: running jobs are killed and reported for a retry');
        shutdownThenExit(
          async () => {
            await worker.stop();
            await sandbox.close?.();
          },
          logger,
          SHUTDOWN_SLACK_MS,
        );
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
}
