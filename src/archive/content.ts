/**
 * An entry's content as the readers hand it to a visitor: a single-use stream
 * of chunks that have already passed the limits, and a way for the reader to
 * make sure every byte was read (sizes are only known once they are read).
 */
import { Readable, Transform } from 'node:stream';
import { PlatformError, errorMessage } from '../errors.ts';
import { ArchiveRejectedError } from './limits.ts';
import type { EntryLedger } from './ledger.ts';

/** Bigger zlib output chunks: ~3x faster than the 16 KiB default, still a fine-grained limit check. */
export const DECOMPRESS_CHUNK_BYTES = 64 * 1024;

export class EntryContent implements AsyncIterable<Buffer> {
  private started = false;
  private finished = false;

  constructor(private readonly produce: () => AsyncGenerator<Buffer>) {}

  static empty(): EntryContent {
    return new EntryContent(async function* () {});
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    if (this.started) throw new PlatformError('archive_content_reread', 'an archive entry can be read only once');
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<Buffer> {
    yield* this.produce();
    this.finished = true;
  }

  /** Reads what the visitor left unread: the walk goes on only once all of it passed the meter. */
  async finish(): Promise<void> {
    if (!this.started) {
      for await (const _chunk of this) {
        // Draining is the point: every byte goes through the meter.
      }
      return;
    }
    if (!this.finished) throw new PlatformError('archive_content_abandoned', 'an archive visitor stopped reading an entry without failing');
  }
}

/**
 * Errors raised by parsers (tar-stream, zlib, yauzl) are about the upload:
 * the user is told the archive is corrupt. System errors (they carry a
 * `syscall`, e.g. EIO on our own disk) are the platform's and pass through.
 */
export function asArchiveError(error: unknown, ledger: EntryLedger, entry?: string): unknown {
  if (error instanceof ArchiveRejectedError || error instanceof PlatformError) return error;
  if (error instanceof Error && 'syscall' in error) return error;
  return ledger.reject('corrupt_archive', `the archive is corrupt or truncated (${errorMessage(error)})`, entry);
}

export function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new PlatformError('archive_bad_chunk', `a stream produced ${typeof chunk} instead of bytes`);
}

/** A pass-through that reports each chunk's size; a throw fails the pipeline. */
export function byteMeter(onBytes: (bytes: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      try {
        onBytes(chunk.length);
        callback(null, chunk);
      } catch (error) {
        callback(error instanceof Error ? error : new Error(String(error)));
      }
    },
  });
}

const READ_CHUNK_BYTES = 64 * 1024;

/**
 * Positioned reads of an archive: an open file (FileHandle has this shape)
 * or an upload still in memory (BytesReader). The readers only ever read
 * through this, so both are parsed by the same code.
 */
export interface RandomAccess {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number; buffer: Buffer }>;
}

/** An archive held in memory, read like a file. */
export class BytesReader implements RandomAccess {
  constructor(readonly bytes: Buffer) {}

  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number; buffer: Buffer }> {
    const bytesRead = position >= this.bytes.length ? 0 : this.bytes.copy(buffer, offset, position, Math.min(position + length, this.bytes.length));
    return Promise.resolve({ bytesRead, buffer });
  }
}

/**
 * Bytes [start, end) of the file as a stream. Not FileHandle.createReadStream:
 * destroying that stream closes the handle, which the walk still needs.
 */
export function readRange(handle: RandomAccess, start: number, end: number): Readable {
  let position = start;
  return new Readable({
    highWaterMark: READ_CHUNK_BYTES,
    read(size) {
      const length = Math.min(size, READ_CHUNK_BYTES, end - position);
      if (length <= 0) {
        this.push(null);
        return;
      }
      handle.read(Buffer.alloc(length), 0, length, position).then(
        ({ bytesRead, buffer }) => {
          position += bytesRead;
          // A file that shrank under us ends early; the parsers report it as truncated.
          this.push(bytesRead === 0 ? null : buffer.subarray(0, bytesRead));
        },
        (error: unknown) => this.destroy(error instanceof Error ? error : new Error(String(error))),
      );
    },
  });
}
