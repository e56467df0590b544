/**
 * Reads a zip with yauzl, under our limits.
 *
 * yauzl parses the central directory and local headers; we keep everything
 * that decides safety: names are decoded and validated by us (yauzl's own
 * name handling rewrites backslashes), file data is inflated by us so every
 * byte is counted against the size the headers declare, and the whole central
 * directory is read and checked (paths, duplicates, overlapping data) before
 * a single byte is decompressed.
 */
import { pipeline, type Readable } from 'node:stream';
import { crc32, createInflateRaw } from 'node:zlib';
import { fromRandomAccessReaderPromise, RandomAccessReader, type Entry, type ZipFile } from 'yauzl';
import { asArchiveError, byteMeter, readRange, DECOMPRESS_CHUNK_BYTES, EntryContent, toBuffer, type RandomAccess } from './content.ts';
import type { EntryKind, EntryLedger } from './ledger.ts';
import type { EntryPath } from './paths.ts';
import type { ArchiveEntry, EntryVisitor } from './walk.ts';

interface PlannedEntry {
  entry: Entry;
  name: string;
  admitted: EntryPath;
  kind: EntryKind;
  executable: boolean;
}

const METHOD_STORED = 0;
const METHOD_DEFLATE = 8;
const FLAG_ENCRYPTED = 0x1;
const LOCAL_HEADER_FIXED_BYTES = 30;
const INFO_ZIP_UNICODE_PATH = 0x7075;
/** "Version made by" hosts whose external attributes carry a Unix mode: Unix, OS X. */
const UNIX_HOSTS: ReadonlySet<number> = new Set([3, 19]);
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const READ_WINDOW_BYTES = 64 * 1024;
/** ignoreBOM keeps a leading U+FEFF in the name instead of silently dropping it. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export async function walkZip(handle: RandomAccess, size: number, ledger: EntryLedger, visit: EntryVisitor): Promise<void> {
  const zip = await openZip(handle, size, ledger);
  try {
    const planned = await planEntries(zip, ledger);
    checkOverlaps(planned, ledger);
    for (const item of planned) await visitEntry(zip, item, ledger, visit);
  } finally {
    zip.close();
  }
}

/**
 * yauzl reads through this instead of its own fd reader, so that the walker
 * keeps ownership of the file handle (yauzl's closes the fd itself) and the
 * central directory is read in windows, not in two syscalls per entry.
 */
class HandleReader extends RandomAccessReader {
  private window: { start: number; bytes: Buffer } | undefined;

  constructor(private readonly handle: RandomAccess) {
    super();
  }

  override _readStreamForRange(start: number, end: number): Readable {
    return readRange(this.handle, start, end);
  }

  override read(buffer: Buffer, offset: number, length: number, position: number, callback: (err: Error | null) => void): void {
    // yauzl's callback also takes the byte count; its typings omit it.
    const done = callback as (err: Error | null, bytesRead: number) => void;
    this.readWindowed(buffer, offset, length, position).then(
      (bytesRead) => done(null, bytesRead),
      (error: unknown) => done(error instanceof Error ? error : new Error(String(error)), 0),
    );
  }

  private async readWindowed(target: Buffer, offset: number, length: number, position: number): Promise<number> {
    let window = this.window;
    if (!window || position < window.start || position + length > window.start + window.bytes.length) {
      const bytes = Buffer.alloc(Math.max(length, READ_WINDOW_BYTES));
      const { bytesRead } = await this.handle.read(bytes, 0, bytes.length, position);
      window = { start: position, bytes: bytes.subarray(0, bytesRead) };
      this.window = window;
    }
    const from = position - window.start;
    return window.bytes.copy(target, offset, from, Math.min(from + length, window.bytes.length));
  }

  override close(callback: (err: Error | null) => void): void {
    callback(null);
  }
}

async function openZip(handle: RandomAccess, size: number, ledger: EntryLedger): Promise<ZipFile> {
  try {
    return await fromRandomAccessReaderPromise(new HandleReader(handle), size, {
      lazyEntries: true,
      autoClose: false,
      decodeStrings: false,
      validateEntrySizes: false,
      strictFileNames: true,
    });
  } catch (error) {
    throw asArchiveError(error, ledger);
  }
}

async function planEntries(zip: ZipFile, ledger: EntryLedger): Promise<PlannedEntry[]> {
  const planned: PlannedEntry[] = [];
  const entries = zip.eachEntry();
  while (true) {
    let next: IteratorResult<Entry>;
    try {
      next = await entries.next();
    } catch (error) {
      throw asArchiveError(error, ledger);
    }
    if (next.done) return planned;
    planned.push(planEntry(next.value, ledger));
  }
}

function planEntry(entry: Entry, ledger: EntryLedger): PlannedEntry {
  const name = decodeName(entry, ledger);
  if (entry.generalPurposeBitFlag & FLAG_ENCRYPTED) throw ledger.reject('encrypted_entry', 'encrypted entries are not supported', name);
  const { kind, executable } = classify(entry, name, ledger);
  if (kind === 'file' && entry.compressionMethod !== METHOD_STORED && entry.compressionMethod !== METHOD_DEFLATE) {
    throw ledger.reject('unsupported_compression', `compression method ${entry.compressionMethod} is not supported (only stored and deflate)`, name);
  }
  const admitted = ledger.admit(name, kind, kind === 'file' ? entry.uncompressedSize : 0);
  return { entry, name, admitted, kind, executable };
}

/**
 * Names are read as UTF-8 whatever the flag says (ASCII is UTF-8; legacy
 * code pages are refused rather than guessed). An Info-ZIP Unicode Path field
 * that disagrees with the name is refused: other tools would extract the
 * entry under that other name.
 */
function decodeName(entry: Entry, ledger: EntryLedger): string {
  const raw = entry.fileNameRaw;
  let name: string;
  try {
    name = UTF8.decode(raw);
  } catch {
    throw ledger.reject('invalid_path', 'path is not valid UTF-8', raw.toString('latin1'));
  }
  const unicodePath = entry.extraFields.find((field) => field.id === INFO_ZIP_UNICODE_PATH);
  if (unicodePath && unicodePath.data.length >= 5 && !unicodePath.data.subarray(5).equals(raw)) {
    throw ledger.reject('invalid_path', 'entry carries a second, different name (Info-ZIP Unicode Path field)', name);
  }
  return name;
}

function classify(entry: Entry, name: string, ledger: EntryLedger): { kind: EntryKind; executable: boolean } {
  const mode = UNIX_HOSTS.has(entry.versionMadeBy >> 8) ? entry.externalFileAttributes >>> 16 : 0;
  const type = mode & S_IFMT;
  const namedDirectory = name.endsWith('/');
  if (type === S_IFLNK) throw ledger.reject('symlink', 'symbolic links are not allowed', name);
  if (type !== 0 && type !== S_IFREG && type !== S_IFDIR) throw ledger.reject('special_file', 'device, FIFO and socket entries are not allowed', name);
  // Tools disagree on which of name and mode wins: both must say the same.
  if (type === S_IFDIR && !namedDirectory) throw ledger.reject('corrupt_archive', 'entry is marked as a directory but its name does not end with "/"', name);
  if (type === S_IFREG && namedDirectory) throw ledger.reject('corrupt_archive', 'entry is marked as a regular file but its name ends with "/"', name);
  if (namedDirectory && entry.uncompressedSize > 0) throw ledger.reject('corrupt_archive', `directory entry declares ${entry.uncompressedSize} bytes of data`, name);
  return { kind: namedDirectory ? 'directory' : 'file', executable: !namedDirectory && (mode & 0o111) !== 0 };
}

/**
 * Overlapping entries (several central records sharing one local file, or
 * local files nested inside another's data) are how non-recursive zip bombs
 * multiply a small file; no honest zip has them. Each entry's span is at least
 * its fixed local header, name and compressed data.
 */
function checkOverlaps(planned: PlannedEntry[], ledger: EntryLedger): void {
  const spans = planned
    .map(({ entry, name }) => ({
      name,
      start: entry.relativeOffsetOfLocalHeader,
      end: entry.relativeOffsetOfLocalHeader + LOCAL_HEADER_FIXED_BYTES + entry.fileNameLength + entry.compressedSize,
    }))
    .sort((a, b) => a.start - b.start);
  for (let index = 1; index < spans.length; index += 1) {
    const previous = spans[index - 1];
    const current = spans[index];
    if (previous && current && current.start < previous.end) {
      throw ledger.reject('overlapping_entries', `its data overlaps the data of entry ${JSON.stringify(previous.name)}`, current.name);
    }
  }
}

async function visitEntry(zip: ZipFile, item: PlannedEntry, ledger: EntryLedger, visit: EntryVisitor): Promise<void> {
  const content = item.kind === 'file' ? new EntryContent(() => fileContent(zip, item, ledger)) : EntryContent.empty();
  const entry: ArchiveEntry = {
    name: item.name,
    path: item.admitted.path,
    segments: item.admitted.segments,
    kind: item.kind,
    executable: item.executable,
    content,
  };
  await visit(entry);
  await content.finish();
}

async function* fileContent(zip: ZipFile, item: PlannedEntry, ledger: EntryLedger): AsyncGenerator<Buffer> {
  const { entry, name } = item;
  const decoded = await openDecoded(zip, item, ledger);
  const meter = ledger.meterFile(name);
  let checksum = 0;
  try {
    for await (const chunk of decoded) {
      const buffer = toBuffer(chunk);
      ledger.progress.uncompressedBytesRead += buffer.length;
      // Checked before the per-file limit: "the headers lie" is the better diagnosis.
      if (meter.bytes + buffer.length > entry.uncompressedSize) {
        throw ledger.reject('size_mismatch', `file decompresses to more than the ${entry.uncompressedSize} bytes its headers declare`, name);
      }
      meter.add(buffer.length);
      checksum = crc32(buffer, checksum);
      yield buffer;
    }
  } catch (error) {
    throw asArchiveError(error, ledger, name);
  } finally {
    decoded.destroy();
  }
  if (meter.bytes !== entry.uncompressedSize) {
    throw ledger.reject('size_mismatch', `file decompresses to ${meter.bytes} bytes but its headers declare ${entry.uncompressedSize}`, name);
  }
  if (checksum !== entry.crc32) throw ledger.reject('corrupt_archive', 'file content does not match its CRC-32', name);
}

async function openDecoded(zip: ZipFile, item: PlannedEntry, ledger: EntryLedger): Promise<Readable> {
  const { entry, name } = item;
  let raw: Readable;
  try {
    const local = await zip.readLocalFileHeaderPromise(entry);
    // Some tools trust the local name: both names must be the same bytes.
    if (!local.fileName.equals(entry.fileNameRaw)) throw ledger.reject('corrupt_archive', 'local header names a different file than the central directory', name);
    raw = await openRawData(zip, local.fileDataStart, entry.compressedSize);
  } catch (error) {
    throw asArchiveError(error, ledger, name);
  }
  const countCompressed = byteMeter((bytes) => {
    ledger.progress.compressedBytesRead += bytes;
  });
  const ignore = (): void => {};
  if (entry.compressionMethod === METHOD_STORED) return pipeline(raw, countCompressed, ignore);
  return pipeline(raw, countCompressed, createInflateRaw({ chunkSize: DECOMPRESS_CHUNK_BYTES }), ignore);
}

/** yauzl 3.4's openReadStreamLowLevelPromise calls the wrong method; this wraps the callback form. */
function openRawData(zip: ZipFile, fileDataStart: number, compressedSize: number): Promise<Readable> {
  return new Promise((resolve, reject) => {
    zip.openReadStreamLowLevel(fileDataStart, compressedSize, 0, compressedSize, false, null, (error, stream) => {
      if (error) reject(error);
      else resolve(stream);
    });
  });
}
