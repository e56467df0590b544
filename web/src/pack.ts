/**
 * A dropped or chosen folder, packed in the browser into the .tar.gz the API
 * accepts (ustar entries, gzip by the browser's own CompressionStream). An
 * archive (.tar.gz, .tgz, .zip) is uploaded as it is.
 */

/** A folder with more files than this is refused before anything is read. */
export const MAX_PACK_FILES = 10_000;
/** The packed folder's total size limit (the API's default upload limit is 64 MiB). */
export const MAX_PACK_BYTES = 64 * 1024 * 1024;
/** Folders never worth uploading: version control and local build output. */
const SKIPPED_DIRECTORIES = new Set(['.git', 'node_modules', 'target', '.kiln']);

export interface SourceFile {
  /** Path inside the project, `/`-separated, without the folder's own name. */
  path: string;
  file: File;
}

export class PackError extends Error {
  override name = 'PackError';
}

export const isArchiveName = (name: string): boolean => /\.(tar\.gz|tgz|zip)$/i.test(name);

/** Files of an `<input webkitdirectory>`: their paths start with the folder's name, which is dropped. */
export function filesFromInput(list: FileList): SourceFile[] {
  return keep(Array.from(list, (file) => ({ path: file.webkitRelativePath.split('/').slice(1).join('/'), file })));
}

/** Files under a dropped directory entry (drag and drop), read recursively. */
export async function filesFromEntry(root: FileSystemDirectoryEntry): Promise<SourceFile[]> {
  const found: SourceFile[] = [];
  const walk = async (directory: FileSystemDirectoryEntry, prefix: string): Promise<void> => {
    for (const entry of await readAll(directory)) {
      if (found.length > MAX_PACK_FILES) throw new PackError(`the folder has more than ${MAX_PACK_FILES} files`);
      if (entry.isDirectory) {
        if (!SKIPPED_DIRECTORIES.has(entry.name)) await walk(entry as FileSystemDirectoryEntry, `${prefix}${entry.name}/`);
      } else if (entry.isFile) {
        found.push({ path: `${prefix}${entry.name}`, file: await fileOf(entry as FileSystemFileEntry) });
      }
    }
  };
  await walk(root, '');
  return keep(found);
}

function keep(files: SourceFile[]): SourceFile[] {
  const kept = files.filter(({ path }) => path !== '' && !path.split('/').some((part) => SKIPPED_DIRECTORIES.has(part)));
  if (kept.length === 0) throw new PackError('the folder is empty');
  if (kept.length > MAX_PACK_FILES) throw new PackError(`the folder has more than ${MAX_PACK_FILES} files`);
  const total = kept.reduce((sum, { file }) => sum + file.size, 0);
  if (total > MAX_PACK_BYTES) throw new PackError(`the folder holds ${Math.round(total / 1024 / 1024)} MiB; at most ${MAX_PACK_BYTES / 1024 / 1024} MiB is packed`);
  return kept;
}

/** A directory reader answers in batches; empty means done. */
async function readAll(directory: FileSystemDirectoryEntry): Promise<FileSystemEntry[]> {
  const reader = directory.createReader();
  const all: FileSystemEntry[] = [];
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) return all;
    all.push(...batch);
  }
}

const fileOf = (entry: FileSystemFileEntry): Promise<File> => new Promise((resolve, reject) => entry.file(resolve, reject));

/** The files as a gzip-compressed ustar archive. */
export async function packTarGz(files: SourceFile[]): Promise<Blob> {
  const parts: BlobPart[] = [];
  for (const { path, file } of [...files].sort((a, b) => a.path.localeCompare(b.path))) {
    parts.push(ustarHeader(path, file.size, file.lastModified), file);
    const padding = (512 - (file.size % 512)) % 512;
    if (padding > 0) parts.push(new Uint8Array(padding));
  }
  parts.push(new Uint8Array(1024));
  const tar = new Blob(parts);
  return new Response(tar.stream().pipeThrough(new CompressionStream('gzip'))).blob();
}

const encoder = new TextEncoder();

/** One 512-byte ustar header; a long path is split into prefix and name at a `/`. */
export function ustarHeader(path: string, size: number, modifiedMs: number): Uint8Array<ArrayBuffer> {
  const { prefix, name } = splitPath(path);
  const header = new Uint8Array(512);
  const put = (text: string, offset: number, length: number) => header.set(encoder.encode(text).subarray(0, length), offset);
  const octal = (value: number, offset: number, length: number) => put(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length);
  put(name, 0, 100);
  octal(0o644, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(Math.max(0, Math.floor(modifiedMs / 1000)), 136, 12);
  put('        ', 148, 8);
  put('0', 156, 1);
  put('ustar\u000000', 257, 8);
  put(prefix, 345, 155);
  const checksum = header.reduce((sum, byte) => sum + byte, 0);
  put(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return header;
}

function splitPath(path: string): { prefix: string; name: string } {
  if (encoder.encode(path).length <= 100) return { prefix: '', name: path };
  for (let slash = path.indexOf('/'); slash > 0; slash = path.indexOf('/', slash + 1)) {
    const prefix = path.slice(0, slash);
    const name = path.slice(slash + 1);
    if (encoder.encode(prefix).length <= 155 && encoder.encode(name).length <= 100) return { prefix, name };
  }
  throw new PackError(`the path ${path} is too long for a tar archive`);
}
