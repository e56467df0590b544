import type { Readable } from 'node:stream';

/** What the store knows about a stored object. */
export interface ObjectInfo {
  key: string;
  size: number;
  /** Hex sha256 of the content, recorded when it was written. */
  sha256: string;
}

/**
 * Objects (sources, artifacts, logs) live behind this interface so the
 * embedded filesystem store and S3 are interchangeable.
 *
 * Keys are relative, slash-separated, made of [A-Za-z0-9._-] segments; no
 * segment is empty, "." or "..". Implementations must reject anything else.
 */
export interface ObjectStore {
  readonly kind: 'fs' | 's3';
  /**
   * Streams `body` into `key`, computing its sha256 and size while writing.
   * The object becomes visible atomically only once fully written.
   * If `expectedSha256` is given and differs, nothing is stored and
   * ObjectIntegrityError is thrown.
   */
  put(key: string, body: Readable | Buffer, options?: { expectedSha256?: string; contentType?: string }): Promise<ObjectInfo>;
  /**
   * Streams the object. The stream verifies the content against the sha256
   * recorded at write time and errors with ObjectIntegrityError at the end if
   * it does not match. Throws ObjectNotFoundError when missing.
   */
  get(key: string): Promise<{ info: ObjectInfo; body: Readable }>;
  /** Reads the whole object into memory, verified. */
  getBuffer(key: string): Promise<{ info: ObjectInfo; body: Buffer }>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Idempotent: deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  /**
   * Deletes every object whose key starts with `prefix` (a plain string
   * prefix: "a/b" also matches "a/bc"; end it with "/" to mean a folder).
   */
  deletePrefix(prefix: string): Promise<void>;
  /**
   * Lists the objects whose key starts with `prefix` (recursive, same prefix
   * rule as deletePrefix), in lexical (byte) order. "" lists everything.
   */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Checks the backend answers (used by /readyz). */
  ping(): Promise<void>;
}

export class ObjectNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`object ${key} does not exist`);
    this.name = 'ObjectNotFoundError';
  }
}

export class ObjectIntegrityError extends Error {
  constructor(
    readonly key: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`object ${key} failed its integrity check: expected sha256 ${expected}, got ${actual}`);
    this.name = 'ObjectIntegrityError';
  }
}

const SEGMENT = /^[A-Za-z0-9._-]+$/;

export function assertValidKey(key: string): void {
  const segments = key.split('/');
  const ok = key.length > 0 && key.length <= 512 && segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..');
  if (!ok) throw new Error(`invalid object key: ${JSON.stringify(key)}`);
}

/**
 * A prefix is "" or the start of a valid key: every complete segment is
 * valid and the last one may be partial ("apps/12/", "apps/1").
 */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  const segments = prefix.split('/');
  const last = segments.pop() ?? '';
  const ok =
    prefix.length <= 512 &&
    segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..') &&
    (last === '' || SEGMENT.test(last));
  if (!ok) throw new Error(`invalid object key prefix: ${JSON.stringify(prefix)}`);
}
