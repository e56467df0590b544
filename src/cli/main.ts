import { Command, CommanderError } from 'commander';
import { KilnApiError, KilnUnreachableError } from './api-client.ts';
import { appsCommand } from './commands/apps.ts';
import { buildsCommand } from './commands/builds.ts';
import { cancelCommand } from './commands/cancel.ts';
import { deployCommand } from './commands/deploy.ts';
import { deploymentsCommand } from './commands/deployments.ts';
import { downloadCommand } from './commands/download.ts';
import { edgeCommand } from './commands/edge.ts';
import { invokeCommand } from './commands/invoke.ts';
import { loginCommand, logoutCommand } from './commands/login.ts';
import { logsCommand } from './commands/logs.ts';
import { promoteCommand } from './commands/promote.ts';
import { rebuildCommand } from './commands/rebuild.ts';
import { rollbackCommand } from './commands/rollback.ts';
import { versionsCommand } from './commands/versions.ts';
import { clientEnvironment } from './environment.ts';
import { Output } from './output.ts';

const program = new Command()
  .name('kiln')
  .description('Build pipeline and test bed for edge WebAssembly applications')
  .version('0.1.0', '-V, --version', 'print the version of kiln')
  // Program options only before the command: `kiln deploy --version 1.2.3` is the app's version.
  .enablePositionalOptions()
  .showHelpAfterError('(run kiln --help for usage)')
  .exitOverride()
  .addHelpText(
    'after',
    `
Where the CLI connects: --url/--token, else KILN_URL/KILN_TOKEN, else what
\`kiln login\` stored, else a local \`kiln serve\` (http://127.0.0.1:8080 with the
token from .kiln/local-token in this directory or a parent).
Every API command takes --json (one JSON document on stdout, for scripts).

Examples:
  kiln serve                          # run Kiln on this machine
  kiln deploy ./my-filter --yes       # build and store a version, watching the log
  kiln apps list
  kiln builds list --state failed
  kiln logs <build> --follow
  kiln download my-filter@1.0.0
  kiln invoke my-function@1.0.0 --input '{"name":"Ada"}'
  kiln <command> --help               # every flag of a command, with examples`,
  );

// `serve` and `worker` pull in the whole server (about a second to load):
// only load them when they are asked for, or for the full help.
const commandName = process.argv.slice(2).find((arg) => !arg.startsWith('-'));
if (commandName === undefined || commandName === 'serve' || commandName === 'worker' || commandName === 'testbed' || commandName === 'help') {
  const [{ serveCommand }, { workerCommand }, { testbedCommand }] = await Promise.all([import('./commands/serve.ts'), import('./commands/worker.ts'), import('./commands/testbed.ts')]);
  program.addCommand(serveCommand());
  program.addCommand(workerCommand());
  program.addCommand(testbedCommand());
}

for (const command of [
  loginCommand(),
  logoutCommand(),
  deployCommand(),
  appsCommand(),
  versionsCommand(),
  buildsCommand(),
  logsCommand(),
  cancelCommand(),
  rebuildCommand(),
  downloadCommand(),
  invokeCommand(),
  promoteCommand(),
  rollbackCommand(),
  deploymentsCommand(),
  edgeCommand(),
]) {
  program.addCommand(command);
}

// addCommand() does not pass settings down (exitOverride, help after errors): copy them.
const descendants = (command: Command): Command[] => command.commands.flatMap((child) => [child, ...descendants(child)]);
for (const command of descendants(program)) command.copyInheritedSettings(command.parent ?? program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  reportError(error);
  process.exit(1);
}

function reportError(error: unknown): void {
  const output = new Output();
  const message = error instanceof Error ? error.message : String(error);
  output.stderr.write(`${output.err.red('error:')} ${message}\n`);
  // API and connection errors carry their own advice; a stack trace helps only with a bug.
  const expected = error instanceof KilnApiError || error instanceof KilnUnreachableError;
  if (clientEnvironment().KILN_DEBUG && !expected && error instanceof Error) output.stderr.write(`${error.stack ?? ''}\n`);
}
