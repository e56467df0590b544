import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../../config.ts';
import { startBuildWorkers } from '../../server/build-workers.ts';
import { SHUTDOWN_SLACK_MS, stopOnSignals } from '../../server/shutdown.ts';
import { clientEnvironment } from '../environment.ts';
import { parseCount } from './serve.ts';

interface WorkerFlags {
  api: string;
  token: string;
  concurrency: number;
  sandbox?: string;
  workDir: string;
  config?: string;
}

export function workerCommand(): Command {
  const env = clientEnvironment();
  return new Command('worker')
    .description('Run build workers against a Kiln API (needs only its URL and a worker token)')
    .requiredOption('--api <url>', 'the API base URL (env KILN_URL)', env.KILN_URL)
    .requiredOption('--token <token>', 'a worker token (env KILN_WORKER_TOKEN)', env.KILN_WORKER_TOKEN)
    .option('-c, --concurrency <n>', 'builds at once', parseCount, 1)
    .option('--sandbox <name>', 'bubblewrap or gvisor (env KILN_SANDBOX; default bubblewrap)')
    .option('--work-dir <dir>', 'where job directories are made', path.join(os.tmpdir(), 'kiln-worker'))
    .option('--config <file>', 'a JSON config file (env KILN_CONFIG_FILE): sandbox, toolchains, fetch registries (docs/configuration.md)')
    .addHelpText('after', '\nExample:\n  kiln worker --api https://kiln.internal:8080 --token "$KILN_WORKER_TOKEN" --concurrency 2')
    .action(async (flags: WorkerFlags) => {
      new URL(flags.api); // throws a clear "Invalid URL" before any work
      const config = loadConfig({ sandbox: flags.sandbox, configFile: flags.config });
      const logger = pino({ level: config.logLevel, base: { service: 'kiln-worker' } });
      const concurrency = Math.max(1, flags.concurrency);
      const workers = await startBuildWorkers(config, { apiUrl: flags.api, token: flags.token, concurrency, workRoot: path.join(flags.workDir, 'jobs'), logger });
      logger.info({ api: flags.api, concurrency, sandbox: config.sandbox }, 'worker started');
      stopOnSignals(
        async () => {
          logger.info('stopping: running jobs are killed and reported for a retry');
          await workers.stop();
        },
        logger,
        SHUTDOWN_SLACK_MS,
      );
    });
}
