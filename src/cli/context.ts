/**
 * What every API command shares: the connection flags (`--url`, `--token`),
 * `--json`, and the client and output built from them. Each command adds the
 * flags itself so that `kiln <command> --help` lists them.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { ApiClient } from './api-client.ts';
import { resolveConfig } from './config.ts';
import { Output } from './output.ts';

export interface CommonFlags {
  json?: boolean;
  url?: string;
  token?: string;
}

export interface CommandContext {
  client: ApiClient;
  output: Output;
}

export function withCommonOptions(command: Command): Command {
  return command
    .option('--json', 'print the result as JSON on stdout (for scripts)')
    .addOption(new Option('--url <url>', 'the Kiln API (default: KILN_URL, then kiln login, then http://127.0.0.1:8080)'))
    .addOption(new Option('--token <token>', 'API token (default: KILN_TOKEN, then kiln login, then .kiln/local-token)'));
}

export function contextFor(flags: CommonFlags): CommandContext {
  return { client: new ApiClient(resolveConfig(flags)), output: new Output({ json: flags.json }) };
}

/** Every leaf command: a description, common flags, notes, then examples (last, where eyes land). */
export function apiCommand(name: string, description: string, examples: string[], notes?: string): Command {
  const help = `${notes ? `\n${notes.trim()}\n` : ''}${examplesText(examples)}`;
  return withCommonOptions(new Command(name).description(description)).addHelpText('after', help);
}

export function examplesText(examples: string[]): string {
  return `\nExamples:\n${examples.map((example) => `  ${example}`).join('\n')}`;
}

export function parsePositiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new InvalidArgumentError('expected a whole number of at least 1');
  return parsed;
}

export function choice<T extends string>(allowed: readonly T[]): (value: string) => T {
  return (value) => {
    const found = allowed.find((candidate) => candidate === value);
    if (found === undefined) throw new InvalidArgumentError(`expected one of ${allowed.join(', ')}`);
    return found;
  };
}
