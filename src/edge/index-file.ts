/**
 * The index a sync writes beside the artifacts (`index.json`): what each
 * file is (application, version, sha256, kind, phases, config), for the
 * edge server's configuration tooling and for the next sync. It is written
 * last, atomically: it always describes the last completed sync.
 */
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { readTextIfExists, writeFileAtomically } from './files.ts';
import { ManifestEntrySchema } from './manifest.ts';
import { INDEX_FILE, isArtifactFileName } from './naming.ts';

export const INDEX_FORMAT = 'kiln-edge-index/1';

const IndexEntrySchema = Type.Composite([
  ManifestEntrySchema,
  Type.Object({
    file: Type.String({ description: 'the file name in this directory' }),
    mtimeMs: Type.Number({ description: 'the file’s mtime when the sync wrote or checked it' }),
  }),
]);
export type IndexEntry = Static<typeof IndexEntrySchema>;

const SyncIndexSchema = Type.Object({
  format: Type.Literal(INDEX_FORMAT),
  environment: Type.String(),
  api: Type.String(),
  /** The manifest ETag this directory fully reflects; null after a partial sync. */
  etag: Type.Union([Type.String(), Type.Null()]),
  syncedAt: Type.String(),
  applications: Type.Array(IndexEntrySchema),
});
export type SyncIndex = Static<typeof SyncIndexSchema>;

const indexChecker = TypeCompiler.Compile(SyncIndexSchema);

export class IndexMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IndexMismatchError';
  }
}

/**
 * The previous index, or undefined when there is none (or it is unreadable:
 * then every file is checked by hash, which is safe, only slower). Entries
 * whose file name is not one the sync could have written are dropped: a
 * tampered index must not steer a removal outside our files.
 */
export async function readIndex(dir: string, environment: string): Promise<SyncIndex | undefined> {
  const text = await readTextIfExists(path.join(dir, INDEX_FILE));
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!indexChecker.Check(value)) return undefined;
  if (value.environment !== environment) {
    throw new IndexMismatchError(`${dir} holds the ${value.environment} environment (see ${INDEX_FILE}); sync ${environment} into another directory`);
  }
  return { ...value, applications: value.applications.filter((entry) => isArtifactFileName(entry.file)) };
}

export async function writeIndex(dir: string, index: SyncIndex): Promise<void> {
  const sorted = { ...index, applications: [...index.applications].sort((a, b) => a.file.localeCompare(b.file)) };
  await writeFileAtomically(path.join(dir, INDEX_FILE), `${JSON.stringify(sorted, null, 2)}\n`);
}
