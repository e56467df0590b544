import { createHash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { ObjectIntegrityError } from './object-store.ts';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Lower-cases and checks a caller-supplied sha256, so a typo is not reported as corruption. */
export function normalizeSha256(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const lower = value.toLowerCase();
  if (!SHA256_HEX.test(lower)) throw new Error(`expectedSha256 is not a hex sha256: ${JSON.stringify(value)}`);
  return lower;
}

export function isSha256Hex(value: unknown): value is string {
  return typeof value === 'string' && SHA256_HEX.test(value);
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

export function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk);
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError('object bodies must be streams of bytes');
}

/** Buffer bodies become one-chunk streams (Readable.from(buffer) would yield single bytes). */
export function toReadable(body: Readable | Buffer): Readable {
  return Buffer.isBuffer(body) ? Readable.from([body]) : body;
}

/** Passes bytes through unchanged while counting and hashing them. */
export class Sha256Meter extends Transform {
  private readonly hash = createHash('sha256');
  private result: string | undefined;
  /** Not called `size`: lib-storage's Upload reads `Body.size` as the body's length. */
  byteCount = 0;

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    const bytes = asBuffer(chunk);
    this.hash.update(bytes);
    this.byteCount += bytes.length;
    callback(null, bytes);
  }

  override _flush(callback: TransformCallback): void {
    this.result = this.hash.digest('hex');
    callback();
  }

  /** The hex digest; only available once every byte went through. */
  get sha256(): string {
    if (this.result === undefined) throw new Error('Sha256Meter: the stream has not ended yet');
    return this.result;
  }
}

/**
 * Passes the stored bytes through and, once the source ends, errors with
 * ObjectIntegrityError unless they hash to the recorded sha256 and size.
 * The error comes after the last chunk: a consumer must not treat what it
 * received as valid before the stream has ended without error.
 */
export class VerifyingStream extends Transform {
  private readonly hash = createHash('sha256');
  private size = 0;

  constructor(
    private readonly key: string,
    private readonly expectedSha256: string,
    private readonly expectedSize: number,
  ) {
    super();
  }

  override _transform(chunk: unknown, _encoding: BufferEncoding, callback: TransformCallback): void {
    const bytes = asBuffer(chunk);
    this.hash.update(bytes);
    this.size += bytes.length;
    callback(null, bytes);
  }

  override _flush(callback: TransformCallback): void {
    const actual = this.hash.digest('hex');
    if (actual !== this.expectedSha256 || this.size !== this.expectedSize) {
      callback(new ObjectIntegrityError(this.key, this.expectedSha256, actual));
      return;
    }
    callback();
  }
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(asBuffer(chunk));
  return Buffer.concat(chunks);
}
