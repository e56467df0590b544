import { join } from 'node:path';
import type { AppKind } from './language.ts';
import { APP_KINDS } from './language.ts';
import { readSmallText } from './files.ts';
import { parseToml, type TomlTable } from './toml.ts';

/**
 * `kiln.toml` at the root of an upload: the language-neutral place where an
 * author states facts a build cannot guess (for now `kind`, and for
 * AssemblyScript `runtime`). Rust uses `[package.metadata.kiln]` instead.
 */
export async function readKilnToml(sourceDir: string): Promise<TomlTable | undefined> {
  const text = await readSmallText(join(sourceDir, 'kiln.toml'));
  return text === undefined ? undefined : parseToml(text);
}

export function asAppKind(value: unknown): AppKind | undefined {
  return APP_KINDS.find((kind) => kind === value);
}
