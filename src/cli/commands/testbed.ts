import { Command } from 'commander';
import { pino } from 'pino';
import { connectToApi, RunnerRefusedError } from '../../testbed/runner/remote.ts';
import { serveRunner } from '../../testbed/runner/runner.ts';
import { Peer } from '../../testbed/runner/wire.ts';
import { parseCount } from './serve.ts';

/** Between reconnection attempts: the API may be restarting. */
const RECONNECT_DELAYS_MS = [500, 1_000, 2_000, 5_000];

export function testbedCommand(): Command {
  return new Command('testbed')
    .description('Run a test bed runner for a Kiln API: it runs tenant modules for invoke and preview (needs only the API URL and a worker token)')
    .requiredOption('--api <url>', 'the API base URL (env KILN_URL)', process.env.KILN_URL)
    .requiredOption('--token <token>', 'a worker token (env KILN_WORKER_TOKEN)', process.env.KILN_WORKER_TOKEN)
    .option('-s, --slots <n>', 'calls at once (one worker thread each)', parseCount, 2)
    .option('--name <name>', 'how the API lists this runner', `remote-${process.pid}`)
    .addHelpText(
      'after',
      `
Bound the runner's own heap with node's flag, e.g. NODE_OPTIONS=--max-old-space-size=512.
Example:
  kiln testbed --api https://kiln.internal:8080 --token "$KILN_WORKER_TOKEN" --slots 2`,
    )
    .action(async (flags: { api: string; token: string; slots: number; name: string }) => {
      new URL(flags.api); // throws a clear "Invalid URL" before any work
      const slots = Math.max(1, flags.slots);
      const logger = pino({ level: process.env.KILN_LOG_LEVEL ?? 'info', base: { service: 'kiln-testbed' } });
      let stopping = false;
      let current: Awaited<ReturnType<typeof serveRunner>> | undefined;
      const stop = async () => {
        stopping = true;
        await current?.close();
        process.exit(0);
      };
      process.once('SIGINT', () => void stop());
      process.once('SIGTERM', () => void stop());
      for (let attempt = 0; !stopping; attempt++) {
        try {
          const peer = new Peer(await connectToApi(flags.api, flags.token));
          current = await serveRunner(peer, { slots, name: flags.name });
          logger.info({ api: flags.api, slots }, 'test bed runner connected');
          attempt = 0;
          const reason = await current.closed;
          if (!stopping) logger.warn({ reason }, 'connection to the API lost; reconnecting');
        } catch (error) {
          if (error instanceof RunnerRefusedError && (error.status === 401 || error.status === 403 || error.status === 404)) throw error;
          logger.warn({ err: error instanceof Error ? error.message : String(error) }, 'could not connect to the API; retrying');
        }
        if (!stopping) await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAYS_MS[Math.min(attempt, RECONNECT_DELAYS_MS.length - 1)]));
      }
    });
}
