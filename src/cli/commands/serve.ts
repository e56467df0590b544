import { Command, InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { loadConfig, SERVE_PRESETS } from '../../config.ts';
import { describeServer, startServer } from '../../server/kiln-server.ts';
import { SHUTDOWN_SLACK_MS, stopOnSignals } from '../../server/shutdown.ts';

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

interface ServeFlags {
  port?: number;
  host?: string;
  dataDir?: string;
  workers?: number;
  sandbox?: string;
  config?: string;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('Run the API and local build workers with embedded defaults (PGlite, filesystem objects)')
    .option('-p, --port <port>', 'port to listen on (env KILN_PORT; default 8080)', parsePort)
    .option('--host <host>', 'address to bind (env KILN_HOST; default 127.0.0.1)')
    .option('-d, --data-dir <dir>', 'where the database, objects and tokens live (env KILN_DATA_DIR; default ./.kiln)')
    .option('-w, --workers <n>', 'local build workers (env KILN_WORKERS; default 2; 0 for an API-only node)', parseCount)
    .option('--sandbox <name>', 'bubblewrap (default) or gvisor (env KILN_SANDBOX)')
    .option('--config <file>', 'a JSON config file (env KILN_CONFIG_FILE); the environment overrides it, flags override both')
    .addHelpText(
      'after',
      `
Every setting (database, S3, build limits, queue, test bed runners and limits,
fetch registries, toolchains…) is an environment variable or a key of the
config file: docs/configuration.md lists them all with their defaults.

Examples:
  kiln serve
  kiln serve --port 9000 --data-dir /var/lib/kiln
  kiln serve --config /etc/kiln/kiln.config.json
  DATABASE_URL=postgres://kiln@db/kiln S3_BUCKET=kiln kiln serve --workers 0`,
    )
    .action(async (flags: ServeFlags) => {
      const { config: configFile, ...overrides } = flags;
      const config = loadConfig({ ...overrides, configFile, presets: SERVE_PRESETS });
      const logger = pino({ level: config.logLevel });
      const server = await startServer(config, logger);
      process.stdout.write(describeServer(server, config, process.cwd()));
      stopOnSignals(() => server.stop(), logger, config.shutdownGraceMs + SHUTDOWN_SLACK_MS);
    });
}
