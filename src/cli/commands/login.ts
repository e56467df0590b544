import { Command } from 'commander';
import { ApiClient, KilnApiError } from '../api-client.ts';
import { configFilePath, DEFAULT_URL, normalizeUrl, removeStoredConfig, writeStoredConfig } from '../config.ts';
import { examplesText } from '../context.ts';
import { clientEnvironment } from '../environment.ts';
import { Output } from '../output.ts';
import { askSecret, canPrompt, readStdin } from '../prompt.ts';

interface LoginFlags {
  token?: string;
  tokenStdin?: boolean;
  json?: boolean;
}

export function loginCommand(): Command {
  return new Command('login')
    .description('Store the API URL and a token in ~/.config/kiln/config.json (mode 0600), after checking them')
    .argument('[url]', `the Kiln API (default: KILN_URL, else ${DEFAULT_URL})`)
    .option('--token <token>', 'the API token (visible in your shell history: prefer --token-stdin or the prompt)')
    .option('--token-stdin', 'read the token from stdin')
    .option('--json', 'print the result as JSON')
    .addHelpText(
      'after',
      `
Without --token or --token-stdin, the token is asked for (hidden) on a terminal.
KILN_URL and KILN_TOKEN, when set, override what is stored. On the machine
running \`kiln serve\` no login is needed: the CLI reads .kiln/local-token.
The file is $KILN_CONFIG, else $XDG_CONFIG_HOME/kiln/config.json.
${examplesText(['kiln login https://kiln.example.com', 'echo "$TOKEN" | kiln login https://kiln.example.com --token-stdin', 'kiln login http://127.0.0.1:9000 --token kiln_own_…'])}`,
    )
    .action(async (rawUrl: string | undefined, flags: LoginFlags) => {
      const output = new Output({ json: flags.json });
      const url = normalizeUrl(rawUrl ?? clientEnvironment().KILN_URL ?? DEFAULT_URL);
      const token = await obtainToken(flags);
      const file = configFilePath();
      const client = new ApiClient({ url, token, tokenSource: 'flag', configFile: file });
      try {
        await client.send('GET', '/v1/tokens');
      } catch (error) {
        if (error instanceof KilnApiError && error.status === 401) throw new Error(`${url} refused this token (${error.code}); nothing was saved. Check the token and try again.`, { cause: error });
        throw error;
      }
      await writeStoredConfig(file, { url, token });
      if (output.json) output.printJson({ url, configFile: file });
      else output.line(`Logged in to ${url}. Saved to ${file} (readable only by you).`);
    });
}

async function obtainToken(flags: LoginFlags): Promise<string> {
  let token = flags.token;
  if (flags.tokenStdin) token = (await readStdin()).toString('utf8');
  else if (token === undefined && canPrompt()) token = await askSecret('API token: ');
  token = token?.trim();
  if (!token) throw new Error('no token given: pass --token <token>, pipe it with --token-stdin, or run kiln login on a terminal to be asked');
  return token;
}

export function logoutCommand(): Command {
  return new Command('logout')
    .description('Forget the stored URL and token')
    .option('--json', 'print the result as JSON')
    .addHelpText('after', examplesText(['kiln logout']))
    .action(async (flags: { json?: boolean }) => {
      const output = new Output({ json: flags.json });
      const file = configFilePath();
      const removed = await removeStoredConfig(file);
      if (output.json) output.printJson({ removed, configFile: file });
      else output.line(removed ? `Removed ${file}.` : `Not logged in (${file} does not exist).`);
    });
}
