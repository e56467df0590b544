import { Command } from 'commander';
import { pino } from 'pino';
import { loadConfig } from '../../config.ts';
import { startRemoteRunner } from '../../server/remote-runner.ts';
import { clientEnvironment } from '../environment.ts';
import { parseCount } from './serve.ts';

interface TestbedFlags {
  api: string;
  token: string;
  slots: number;
  name: string;
  config?: string;
}

export function testbedCommand(): Command {
  const env = clientEnvironment();
  return new Command('testbed')
    .description('Run a test bed runner for a Kiln API: it runs tenant modules for invoke and preview (needs only the API URL and a worker token)')
    .requiredOption('--api <url>', 'the API base URL (env KILN_URL)', env.KILN_URL)
    .requiredOption('--token <token>', 'a worker token (env KILN_WORKER_TOKEN)', env.KILN_WORKER_TOKEN)
    .option('-s, --slots <n>', 'calls at once (one worker thread each)', parseCount, 2)
    .option('--name <name>', 'how the API lists this runner', `remote-${process.pid}`)
    .option('--config <file>', 'a JSON config file (env KILN_CONFIG_FILE); the runner uses its logLevel, its limits come from the API')
    .addHelpText(
      'after',
      `
Bound the runner's own heap with node's flag, e.g. NODE_OPTIONS=--max-old-space-size=512.
Example:
  kiln testbed --api https://kiln.internal:8080 --token "$KILN_WORKER_TOKEN" --slots 2`,
    )
    .action(async (flags: TestbedFlags) => {
      new URL(flags.api); // throws a clear "Invalid URL" before any work
      const config = loadConfig({ configFile: flags.config });
      const logger = pino({ level: config.logLevel, base: { service: 'kiln-testbed' } });
      const runner = startRemoteRunner({ apiUrl: flags.api, token: flags.token, slots: Math.max(1, flags.slots), name: flags.name, logger });
      const stop = async () => {
        await runner.stop();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
      await runner.done;
    });
}
