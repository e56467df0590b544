/**
 * Watching a build: its log streamed live, state changes noted, a spinner
 * while it waits for a worker (terminal only). Shared by deploy, rebuild and
 * `logs --follow`.
 */
import type { ApiClient, Build } from './api-client.ts';
import { Spinner, type Output } from './output.ts';

export interface FollowOptions {
  /** Where log text goes (stdout for a person; stderr when stdout carries JSON). */
  writeLog: (text: string) => void;
  /** Notes about state changes (stderr). */
  notes: boolean;
}

export interface Followed {
  build: Build;
  /** The log ended with a newline (so the summary starts on its own line). */
  endsWithNewline: boolean;
}

export async function followBuild(client: ApiClient, output: Output, initial: Build, options: FollowOptions): Promise<Followed> {
  const spinner = new Spinner(output);
  let endsWithNewline = true;
  const abort = new AbortController();
  const onInterrupt = () => abort.abort();
  process.once('SIGINT', onInterrupt);
  if (initial.state === 'queued' && options.notes) spinner.start(`Build #${initial.number} is queued, waiting for a build worker… (Ctrl-C stops watching; the build goes on)`);
  try {
    const build = await client.followBuild(
      initial.id,
      {
        onLog: (text) => {
          spinner.stop();
          if (text === '') return;
          options.writeLog(text);
          endsWithNewline = text.endsWith('\n');
        },
        onState: (build) => {
          spinner.stop();
          if (!options.notes || build.state === 'queued') return;
          if (!endsWithNewline) options.writeLog('\n');
          endsWithNewline = true;
          const verb = build.state === 'running' ? 'is running' : build.state;
          output.note(output.err.dim(`── build #${build.number} ${verb}${build.attempts > 1 ? ` (attempt ${build.attempts})` : ''}`));
        },
      },
      abort.signal,
    );
    return { build, endsWithNewline };
  } catch (error) {
    if (abort.signal.aborted) stoppedWatching(output, initial);
    throw error;
  } finally {
    spinner.stop();
    process.off('SIGINT', onInterrupt);
  }
}

/** Ctrl-C stops the CLI, not the build: say how to get back to it. */
function stoppedWatching(output: Output, build: Build): never {
  output.note('');
  output.note(`Stopped watching. Build ${build.id} goes on on the server:`);
  output.note(`  kiln logs ${build.id} --follow    watch it again`);
  output.note(`  kiln cancel ${build.id}           stop it`);
  process.exit(130);
}
