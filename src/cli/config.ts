/**
 * Where the CLI finds the API URL and the token, in order:
 *   1. `--url` / `--token` flags,
 *   2. `KILN_URL` / `KILN_TOKEN`,
 *   3. the file `kiln login` wrote (~/.config/kiln/config.json),
 *   4. a local `kiln serve`: `.kiln/local-token` in the working directory or
 *      any parent (or in `$KILN_DATA_DIR`), at http://127.0.0.1:8080.
 *
 * A token is only ever sent to the URL it belongs to: the stored token only to
 * the stored URL, the local token only to a loopback address. Otherwise
 * `KILN_URL=https://elsewhere kiln apps list` would hand the local owner's
 * token to whoever runs "elsewhere".
 */
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { clientEnvironment } from './environment.ts';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export interface StoredConfig {
  url: string;
  token: string;
}

export type TokenSource = 'flag' | 'KILN_TOKEN' | 'config' | 'local';

export interface ResolvedConfig {
  url: string;
  token?: string;
  tokenSource?: TokenSource;
  /** Which file the token came from, for error messages. */
  tokenFile?: string;
  configFile: string;
}

export interface ConnectionFlags {
  url?: string;
  token?: string;
}

type Env = Record<string, string | undefined>;

/** `$KILN_CONFIG`, else `$XDG_CONFIG_HOME/kiln/config.json`, else `~/.config/kiln/config.json`. */
export function configFilePath(env: Env = clientEnvironment()): string {
  if (env.KILN_CONFIG) return path.resolve(env.KILN_CONFIG);
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'kiln', 'config.json');
}

export function readStoredConfig(file: string): StoredConfig | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${file} is not valid JSON; fix it or run kiln login again`);
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { url, token } = value as Record<string, unknown>;
  return typeof url === 'string' && typeof token === 'string' ? { url, token } : undefined;
}

/** Written to a temp file first, mode 0600 from the start: the token is a secret. */
export async function writeStoredConfig(file: string, config: StoredConfig): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  await writeFile(temp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  await chmod(temp, 0o600); // the umask cannot loosen it, but an existing file's mode could
  await rename(temp, file);
}

export async function removeStoredConfig(file: string): Promise<boolean> {
  if (!existsSync(file)) return false;
  await rm(file, { force: true });
  return true;
}

/** `.kiln/local-token` in dir or the nearest parent that has one. */
export function findLocalToken(startDir: string, env: Env = clientEnvironment()): { token: string; file: string; url?: string } | undefined {
  const candidates: string[] = [];
  if (env.KILN_DATA_DIR) candidates.push(path.resolve(startDir, env.KILN_DATA_DIR));
  for (let dir = path.resolve(startDir); ; dir = path.dirname(dir)) {
    candidates.push(path.join(dir, '.kiln'));
    if (path.dirname(dir) === dir) break;
  }
  for (const dataDir of candidates) {
    const file = path.join(dataDir, 'local-token');
    const token = readTrimmed(file);
    // A `local-url` beside it, if the server wrote one, tells a non-default port.
    if (token) return { token, file, url: readTrimmed(path.join(dataDir, 'local-url')) };
  }
  return undefined;
}

function readTrimmed(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export function isLoopback(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
  } catch {
    return false;
  }
}

/** The URL without a trailing slash, so `${url}/v1/...` is always right. */
export function normalizeUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new Error(`${JSON.stringify(raw)} is not a URL; expected something like ${DEFAULT_URL}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${raw}: only http and https URLs are supported`);
  return url.toString().replace(/\/+$/, '');
}

const sameUrl = (a: string, b: string): boolean => normalizeUrl(a) === normalizeUrl(b);

export function resolveConfig(flags: ConnectionFlags = {}, env: Env = clientEnvironment(), cwd = process.cwd()): ResolvedConfig {
  const configFile = configFilePath(env);
  const stored = readStoredConfig(configFile);
  const local = findLocalToken(cwd, env);
  const url = normalizeUrl(flags.url ?? env.KILN_URL ?? stored?.url ?? local?.url ?? DEFAULT_URL);
  const base = { url, configFile };
  if (flags.token) return { ...base, token: flags.token, tokenSource: 'flag' };
  if (env.KILN_TOKEN) return { ...base, token: env.KILN_TOKEN, tokenSource: 'KILN_TOKEN' };
  if (stored && sameUrl(stored.url, url)) return { ...base, token: stored.token, tokenSource: 'config', tokenFile: configFile };
  if (local && isLoopback(url)) return { ...base, token: local.token, tokenSource: 'local', tokenFile: local.file };
  return base;
}

export function describeTokenSource(config: ResolvedConfig): string {
  switch (config.tokenSource) {
    case 'flag':
      return 'the --token flag';
    case 'KILN_TOKEN':
      return 'KILN_TOKEN';
    case 'config':
    case 'local':
      return config.tokenFile ?? 'a file';
    case undefined:
      return 'nowhere';
  }
}
