/**
 * Reads a gzip-compressed tar with tar-stream, under our limits.
 *
 * Tar headers cannot lie about sizes (they define where the next header is),
 * but the gzip layer can hold anything: runs of zero blocks, giant pax
 * headers, entries that never end. So every byte out of gunzip is counted and
 * the whole decompressed stream is capped, and file contents are metered on
 * top of that. Reading is pulled by the consumer: when we stop, decompression
 * stops.
 */
import { pipeline, type Readable } from 'node:stream';
import { createGunzip, gunzipSync } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { asArchiveError, byteMeter, BytesReader, readRange, DECOMPRESS_CHUNK_BYTES, EntryContent, toBuffer, type RandomAccess } from './content.ts';
import { displayName } from './limits.ts';
import type { EntryKind, EntryLedger } from './ledger.ts';
import type { ArchiveEntry, EntryVisitor } from './walk.ts';

/** Per-entry allowance for headers, pax records and padding in the decompressed tar stream. */
const TAR_OVERHEAD_PER_ENTRY = 4096;
const TAR_OVERHEAD_FIXED = 1024 * 1024;
/**
 * A small archive held in memory is inflated in one call: through a zlib
 * stream every chunk is a round trip to libuv's thread pool, which cost the
 * upload path more than inflating a few KiB (issue 16). Both bounds keep that
 * call on the event loop short; beyond them, or when zlib refuses the data,
 * the stream does the work, and its checks and errors are what the user sees.
 */
const INFLATE_AT_ONCE_MAX_COMPRESSED = 64 * 1024;
const INFLATE_AT_ONCE_MAX_OUTPUT = 256 * 1024;

type TarSource = AsyncIterable<unknown> & { header: Header };
/** Maps a parser failure to the error the user sees, naming the entry when known. */
type Explain = (error: unknown, entry?: string) => unknown;

export async function walkTarGz(handle: RandomAccess, size: number, ledger: EntryLedger, visit: EntryVisitor): Promise<void> {
  const extract = tarExtract();
  // The first failure upstream (gunzip, our caps) is the real cause; what
  // reaches the entry streams may only be a generic "destroyed".
  let upstreamFailure: Error | undefined;
  const decompressed = openDecompressed(handle, size, ledger, (error) => {
    upstreamFailure ??= error;
    extract.destroy(error);
  });
  const explain: Explain = (error, entry) => asArchiveError(upstreamFailure ?? error, ledger, entry);
  decompressed.pipe(extract);
  const entries = extract[Symbol.asyncIterator]();
  try {
    while (true) {
      const next = await nextEntry(entries, explain);
      if (next === undefined) break;
      await visitEntry(next, ledger, visit, explain);
    }
  } finally {
    // Stop reading the file at once, whatever happened.
    decompressed.destroy();
    await entries.return?.();
  }
}

function openDecompressed(handle: RandomAccess, size: number, ledger: EntryLedger, onError: (error: Error) => void): Readable {
  const { progress, limits } = ledger;
  const cap = limits.maxTotalBytes + limits.maxEntries * TAR_OVERHEAD_PER_ENTRY + TAR_OVERHEAD_FIXED;
  const countDecompressed = byteMeter((bytes) => {
    progress.uncompressedBytesRead += bytes;
    if (progress.uncompressedBytesRead > cap) {
      throw ledger.reject('total_too_large', `the decompressed tar stream exceeds ${cap} bytes (file contents plus headers)`);
    }
  });
  const inflated = handle instanceof BytesReader && size === handle.bytes.length ? inflateAtOnce(handle.bytes) : undefined;
  if (inflated) {
    progress.compressedBytesRead += size;
    // The same meter and cap as the stream below, over the inflated bytes.
    // Not through stream.pipeline: on Node 20 each pipeline aborts an
    // AbortController when it finishes, and the DOMException that builds
    // (with its stack) cost ~70 µs of the API's main thread per upload.
    countDecompressed.on('error', onError);
    return countDecompressed.end(inflated);
  }
  const file = readRange(handle, 0, size);
  const countCompressed = byteMeter((bytes) => {
    progress.compressedBytesRead += bytes;
  });
  const gunzip = createGunzip({ chunkSize: DECOMPRESS_CHUNK_BYTES });
  return pipeline(file, countCompressed, gunzip, countDecompressed, (error) => {
    if (error) onError(error);
  });
}

/** The whole archive inflated, when it is small and zlib accepts it as is; undefined otherwise (the stream decides). */
function inflateAtOnce(compressed: Buffer): Buffer | undefined {
  if (compressed.length > INFLATE_AT_ONCE_MAX_COMPRESSED) return undefined;
  try {
    return gunzipSync(compressed, { maxOutputLength: INFLATE_AT_ONCE_MAX_OUTPUT });
  } catch {
    return undefined;
  }
}

async function nextEntry(entries: AsyncIterator<unknown>, explain: Explain): Promise<TarSource | undefined> {
  try {
    const next = await entries.next();
    return next.done ? undefined : (next.value as TarSource);
  } catch (error) {
    throw explain(error);
  }
}

async function visitEntry(source: TarSource, ledger: EntryLedger, visit: EntryVisitor, explain: Explain): Promise<void> {
  const { header } = source;
  const kind = classify(header, ledger);
  const admitted = ledger.admit(header.name, kind, kind === 'file' ? header.size : 0);
  // Directories have no data in the stream (classify refused any size).
  const content = kind === 'file' ? new EntryContent(() => fileContent(source, ledger, explain)) : EntryContent.empty();
  const entry: ArchiveEntry = {
    name: header.name,
    path: admitted.path,
    segments: admitted.segments,
    kind,
    executable: kind === 'file' && (header.mode & 0o111) !== 0,
    content,
  };
  await visit(entry);
  await content.finish();
}

function classify(header: Header, ledger: EntryLedger): EntryKind {
  const type: string | null = header.type;
  switch (type) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      // tar-stream would parse a directory's data as headers; other tools
      // skip it. Refusing keeps every reader of this archive in agreement.
      if (header.size > 0) throw ledger.reject('corrupt_archive', `directory entry carries ${header.size} bytes of data`, header.name);
      return 'directory';
    case 'symlink':
      throw ledger.reject('symlink', `symbolic links are not allowed (it points to ${JSON.stringify(displayName(header.linkname ?? ''))})`, header.name);
    case 'link':
      throw ledger.reject('hard_link', `hard links are not allowed (it links to ${JSON.stringify(displayName(header.linkname ?? ''))})`, header.name);
    case 'character-device':
    case 'block-device':
    case 'fifo':
      throw ledger.reject('special_file', `${type} entries are not allowed`, header.name);
    default:
      // tar-stream reports unknown typeflags (GNU sparse, dumpdir, ...) as null.
      throw ledger.reject('special_file', 'entries of this type are not allowed (only regular files and directories)', header.name);
  }
}

async function* fileContent(source: TarSource, ledger: EntryLedger, explain: Explain): AsyncGenerator<Buffer> {
  const meter = ledger.meterFile(source.header.name);
  try {
    for await (const chunk of source) {
      const buffer = toBuffer(chunk);
      meter.add(buffer.length);
      yield buffer;
    }
  } catch (error) {
    throw explain(error, source.header.name);
  }
}
