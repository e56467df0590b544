/**
 * The optional config file (`--config kiln.config.json` or KILN_CONFIG_FILE):
 * JSON whose nested objects spell the dotted keys of docs/configuration.md,
 * e.g. `{"port": 9000, "testbed": {"maxHeaderCount": 50}}`. A key the loader
 * does not know is an error, not ignored: a typo would otherwise leave a
 * limit at its default without anyone noticing.
 */
import { readFileSync } from 'node:fs';
import { ConfigError, type FileValues, type RawValue } from './settings.ts';

/** A config file is a few KiB; anything far larger is a mistake (a wrong path), not a config. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

export function readConfigFile(file: string, knownKeys: ReadonlySet<string>): FileValues {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`config file ${file}: cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
  }
  if (Buffer.byteLength(text) > MAX_CONFIG_FILE_BYTES) throw new ConfigError(`config file ${file}: larger than ${MAX_CONFIG_FILE_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`config file ${file}: not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (!isObject(parsed)) throw new ConfigError(`config file ${file}: expected a JSON object of settings`);
  const values = new Map<string, RawValue>();
  flatten(parsed, '', values, file);
  for (const key of values.keys()) {
    if (!knownKeys.has(key)) throw new ConfigError(`config file ${file}: ${JSON.stringify(key)} is not a setting (docs/configuration.md lists them)`);
  }
  return values;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function flatten(object: Record<string, unknown>, prefix: string, into: Map<string, RawValue>, file: string): void {
  for (const [name, value] of Object.entries(object)) {
    const key = prefix === '' ? name : `${prefix}.${name}`;
    if (isObject(value)) flatten(value, key, into, file);
    else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') into.set(key, value);
    else if (Array.isArray(value) && value.every((item) => typeof item === 'string')) into.set(key, value as string[]);
    else throw new ConfigError(`config file ${file}: ${JSON.stringify(key)} must be text, a number, a boolean or a list of text`);
  }
}
