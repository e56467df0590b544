import { Command, CommanderError } from 'commander';
import { serveCommand } from './commands/serve.ts';
import { workerCommand } from './commands/worker.ts';

const program = new Command()
  .name('kiln')
  .description('Build pipeline and test bed for edge WebAssembly applications')
  .version('0.1.0')
  .showHelpAfterError('(run kiln --help for usage)')
  .exitOverride();

program.addCommand(serveCommand());
program.addCommand(workerCommand());

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  console.error(`kiln: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
