import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import type { HeadObjectCommandOutput } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PlatformError } from '../../errors.ts';
import { asBuffer, isSha256Hex, normalizeSha256, readAll, Sha256Meter, toReadable, VerifyingStream } from './integrity.ts';
import { assertValidKey, assertValidPrefix, ObjectIntegrityError, ObjectNotFoundError } from './object-store.ts';
import type { ObjectInfo, ObjectStore } from './object-store.ts';

// Kiln targets Node 20 and pins the SDK in package-lock.json; the SDK's
// notice about future releases needing Node 22 would repeat on every start
// (README: "Stack and deviations" notes the upgrade path). This configures the
// SDK, not Kiln: no Kiln setting is read here (src/config.ts reads them all).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface S3ObjectStoreConfig {
  /** e.g. http://127.0.0.1:7480; omit for AWS itself. */
  endpoint?: string;
  bucket: string;
  region: string;
  /** Omit both keys to use the SDK's default credential chain. */
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Needed by most non-AWS servers (radosgw, MinIO): bucket in the path, not the host name. */
  forcePathStyle?: boolean;
  /** Time allowed to open a TCP connection (default 5 s). */
  connectTimeoutMs?: number;
  /** Time allowed to send a request (a 5 MiB part included) and receive the response headers (default 60 s). */
  requestTimeoutMs?: number;
  /** Longest silence on a connection, e.g. while streaming a body, before the request fails (default 30 s). */
  idleTimeoutMs?: number;
  /** Attempts per request, retries included (default 3). */
  maxAttempts?: number;
}

/** The user metadata entry (x-amz-meta-sha256) holding the content hash. */
const SHA256_METADATA = 'sha256';
/**
 * Bodies up to this size are buffered, hashed and sent in one PutObject
 * carrying their sha256. Larger ones cannot know their hash before the
 * upload starts, so they stream (multipart) to a temporary key, then are
 * copied server-side to their key with the hash as metadata. 5 MiB is also
 * the smallest multipart part, so memory per put stays ~ (1 + queue) parts.
 */
const SINGLE_PUT_LIMIT = 5 * 1024 * 1024;
const PART_SIZE = 5 * 1024 * 1024;
const PART_QUEUE = 2;
/**
 * Temporary keys of large puts in flight. Not a valid Kiln key prefix for
 * listing purposes: list and deletePrefix skip it. A crash can leave
 * completed temporaries here; they are safe to delete once older than a day.
 */
export const S3_TEMP_PREFIX = '.kiln-tmp/';
/** HEAD requests in flight while listing (S3 listings carry no user metadata). */
const LIST_HEAD_CONCURRENCY = 8;

interface SdkError {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function sdkError(error: unknown): SdkError {
  return typeof error === 'object' && error !== null ? (error as SdkError) : {};
}

function isMissing(error: unknown): boolean {
  const { name, $metadata } = sdkError(error);
  return name === 'NoSuchKey' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
}

function isMissingBucket(error: unknown): boolean {
  const { name, $metadata } = sdkError(error);
  return name === 'NoSuchBucket' || name === 'NotFound' || $metadata?.httpStatusCode === 404;
}

/** Why a bare status (HEAD answers carry no error body) usually happens. */
const STATUS_HINTS: Record<number, string> = {
  400: 'bad request',
  403: 'access denied: wrong access key or secret, or no permission on the bucket',
  404: 'not found',
  500: 'server error',
  503: 'server unavailable or overloaded',
};

/** "SignatureDoesNotMatch (HTTP 403)" rather than the SDK's frequent "UnknownError". */
function describeError(error: unknown): string {
  const { name, message, $metadata } = sdkError(error);
  const status = $metadata?.httpStatusCode;
  const known = name && name !== 'Unknown' && name !== 'UnknownError' ? name : undefined;
  const detail = message && message !== 'UnknownError' && message !== name ? `: ${message}` : '';
  const hint = status && !known ? STATUS_HINTS[status] : undefined;
  return `${known ?? (hint ? '' : 'Error')}${hint ?? ''}${status ? ` (HTTP ${status})` : ''}${detail}`;
}

export class S3ObjectStore implements ObjectStore {
  readonly kind = 's3' as const;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly where: string;
  private bucketReady: Promise<void> | undefined;

  constructor(config: S3ObjectStoreConfig) {
    this.bucket = config.bucket;
    this.where = `bucket ${config.bucket} at ${config.endpoint ?? `AWS ${config.region}`}`;
    const credentials =
      config.accessKeyId && config.secretAccessKey
        ? { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey }
        : undefined;
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: config.forcePathStyle ?? false,
      credentials,
      maxAttempts: config.maxAttempts ?? 3,
      // Without these a dead or silent server makes calls hang forever.
      // This SDK only logs a warning when requestTimeout passes unless
      // throwOnRequestTimeout is set; socketTimeout also covers a body
      // stream that stalls after the headers arrived.
      requestHandler: {
        connectionTimeout: config.connectTimeoutMs ?? 5000,
        requestTimeout: config.requestTimeoutMs ?? 60_000,
        throwOnRequestTimeout: true,
        socketTimeout: config.idleTimeoutMs ?? 30_000,
      },
      // The SDK's default CRC32 checksums (trailers on streamed bodies) are
      // not understood by radosgw 16 and other older S3 servers; integrity
      // comes from our own sha256 (and Content-MD5 on single puts).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  async put(key: string, body: Readable | Buffer, options: { expectedSha256?: string; contentType?: string } = {}): Promise<ObjectInfo> {
    assertValidKey(key);
    const expected = normalizeSha256(options.expectedSha256);
    await this.ready();
    const source = toReadable(body);
    const { head, rest } = await this.splitHead(source);
    if (!rest) return this.putSmall(key, head, expected, options.contentType);
    return this.putLarge(key, rest, expected, options.contentType);
  }

  async get(key: string): Promise<{ info: ObjectInfo; body: Readable }> {
    assertValidKey(key);
    await this.ready();
    let output;
    try {
      output = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      if (isMissing(error)) throw new ObjectNotFoundError(key);
      throw this.failure('get', key, error);
    }
    const body = output.Body;
    if (!(body instanceof Readable)) throw new PlatformError('object_store_failed', `S3 get of ${key} returned no stream`);
    let info: ObjectInfo;
    try {
      info = this.infoFrom(key, output.Metadata, output.ContentLength);
    } catch (error) {
      body.destroy();
      throw error;
    }
    const verifier = new VerifyingStream(key, info.sha256, info.size);
    // Errors of the HTTP body (e.g. the socket timing out) reach the consumer through the verifier.
    void pipeline(body, verifier).catch(() => {});
    return { info, body: verifier };
  }

  async getBuffer(key: string): Promise<{ info: ObjectInfo; body: Buffer }> {
    const { info, body } = await this.get(key);
    return { info, body: await readAll(body) };
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key);
    await this.ready();
    const output = await this.headObject(key);
    return output && this.infoFrom(key, output.Metadata, output.ContentLength);
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key);
    await this.ready();
    try {
      // S3 answers 204 for a missing key too: deleting is idempotent.
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      throw this.failure('delete', key, error);
    }
  }

  async deletePrefix(prefix: string): Promise<void> {
    assertValidPrefix(prefix);
    await this.ready();
    for await (const keys of this.keyPages(prefix)) {
      if (keys.length === 0) continue;
      let output;
      try {
        output = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
        );
      } catch (error) {
        throw this.failure('deletePrefix', prefix, error);
      }
      const failed = output.Errors ?? [];
      if (failed.length > 0) {
        const first = failed[0];
        throw new PlatformError(
          'object_store_failed',
          `S3 deletePrefix ${prefix} in ${this.where}: ${failed.length} objects not deleted, e.g. ${first?.Key}: ${first?.Code} ${first?.Message ?? ''}`,
        );
      }
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    assertValidPrefix(prefix);
    await this.ready();
    for await (const keys of this.keyPages(prefix)) {
      for (let i = 0; i < keys.length; i += LIST_HEAD_CONCURRENCY) {
        const batch = keys.slice(i, i + LIST_HEAD_CONCURRENCY);
        const heads = await Promise.all(batch.map(async (key) => ({ key, output: await this.headObject(key) })));
        for (const { key, output } of heads) {
          // No output: deleted between the listing and the HEAD.
          if (output) yield this.infoFrom(key, output.Metadata, output.ContentLength);
        }
      }
    }
  }

  /** Checks the bucket answers and creates it when missing (every call asks the server). */
  async ping(): Promise<void> {
    await this.ensureBucket();
  }

  /** The bucket check, done once per store unless it fails. */
  private ready(): Promise<void> {
    this.bucketReady ??= this.ensureBucket().catch((error: unknown) => {
      this.bucketReady = undefined;
      throw error;
    });
    return this.bucketReady;
  }

  private async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (error) {
      if (!isMissingBucket(error)) throw this.failure('ping', undefined, error);
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      // Lost a race with another process creating it: fine.
      if (sdkError(error).name !== 'BucketAlreadyOwnedByYou') throw this.failure('create bucket', undefined, error);
    }
  }

  /**
   * Reads up to SINGLE_PUT_LIMIT bytes. `rest` is undefined when the body
   * ended within them, else a stream of the whole body (head included).
   */
  private async splitHead(source: Readable): Promise<{ head: Buffer; rest?: Readable }> {
    const iterator = source[Symbol.asyncIterator]();
    const chunks: Buffer[] = [];
    let size = 0;
    while (size <= SINGLE_PUT_LIMIT) {
      const next = await iterator.next();
      if (next.done) return { head: Buffer.concat(chunks) };
      const bytes = asBuffer(next.value);
      chunks.push(bytes);
      size += bytes.length;
    }
    // Delegating with yield* passes a destroy of `rest` on to the source.
    async function* whole(): AsyncGenerator<Buffer> {
      yield* chunks;
      yield* { [Symbol.asyncIterator]: () => iterator };
    }
    return { head: Buffer.alloc(0), rest: Readable.from(whole(), { objectMode: false }) };
  }

  private async putSmall(key: string, bytes: Buffer, expected: string | undefined, contentType: string | undefined): Promise<ObjectInfo> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (expected !== undefined && sha256 !== expected) throw new ObjectIntegrityError(key, expected, sha256);
    try {
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: bytes,
          ContentLength: bytes.length,
          // The server rejects the put if the bytes were damaged on the way.
          ContentMD5: createHash('md5').update(bytes).digest('base64'),
          ContentType: contentType,
          Metadata: { [SHA256_METADATA]: sha256 },
        }),
      );
    } catch (error) {
      throw this.failure('put', key, error);
    }
    return { key, size: bytes.length, sha256 };
  }

  private async putLarge(key: string, body: Readable, expected: string | undefined, contentType: string | undefined): Promise<ObjectInfo> {
    const temp = `${S3_TEMP_PREFIX}${randomUUID()}`;
    const meter = new Sha256Meter();
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: temp, Body: meter, ContentType: contentType },
      partSize: PART_SIZE,
      queueSize: PART_QUEUE,
    });
    try {
      await Promise.all([pipeline(body, meter), upload.done()]);
    } catch (error) {
      body.destroy();
      meter.destroy();
      await upload.abort().catch(() => {});
      await this.deleteQuietly(temp);
      throw this.failure('put', key, error);
    }
    try {
      if (expected !== undefined && meter.sha256 !== expected) throw new ObjectIntegrityError(key, expected, meter.sha256);
      await this.copyWithHash(temp, key, meter.sha256, contentType);
    } finally {
      await this.deleteQuietly(temp);
    }
    return { key, size: meter.byteCount, sha256: meter.sha256 };
  }

  /** Server-side copy (single request: objects up to 5 GB) that sets the sha256 metadata. */
  private async copyWithHash(from: string, to: string, sha256: string, contentType: string | undefined): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: to,
          CopySource: `${this.bucket}/${from}`,
          MetadataDirective: 'REPLACE',
          Metadata: { [SHA256_METADATA]: sha256 },
          ContentType: contentType,
        }),
      );
    } catch (error) {
      throw this.failure('put', to, error);
    }
  }

  /** Cleanup that must not mask the error being reported; leftovers live under S3_TEMP_PREFIX. */
  private async deleteQuietly(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })).catch(() => {});
  }

  private async headObject(key: string): Promise<HeadObjectCommandOutput | undefined> {
    try {
      return await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw this.failure('head', key, error);
    }
  }

  /** Pages of keys under `prefix` (temporaries excluded), in S3's byte order. */
  private async *keyPages(prefix: string): AsyncGenerator<string[]> {
    let token: string | undefined;
    do {
      let output;
      try {
        output = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
        );
      } catch (error) {
        throw this.failure('list', prefix, error);
      }
      const keys = (output.Contents ?? []).map((o) => o.Key ?? '').filter((k) => k !== '' && !k.startsWith(S3_TEMP_PREFIX));
      yield keys;
      token = output.IsTruncated ? output.NextContinuationToken : undefined;
    } while (token);
  }

  private infoFrom(key: string, metadata: Record<string, string> | undefined, size: number | undefined): ObjectInfo {
    const sha256 = metadata?.[SHA256_METADATA];
    // Written behind the store's back: there is nothing to verify against.
    if (!isSha256Hex(sha256)) throw new ObjectIntegrityError(key, '(no sha256 recorded)', '(not computed)');
    return { key, size: size ?? 0, sha256 };
  }

  private failure(operation: string, key: string | undefined, error: unknown): Error {
    if (error instanceof ObjectIntegrityError || error instanceof ObjectNotFoundError || error instanceof PlatformError) return error;
    const what = key === undefined ? '' : ` ${key}`;
    return new PlatformError('object_store_failed', `S3 ${operation}${what} in ${this.where} failed: ${describeError(error)}`, {
      cause: error,
    });
  }
}
