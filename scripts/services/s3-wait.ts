/**
 * Waits until the S3 endpoint described by the S3_* environment variables
 * accepts *signed* requests with the given keys, creates the bucket and
 * round-trips a probe object. An anonymous GET answering 200 only proves the
 * HTTP frontend is up; this proves the user, the pools and the OSD work.
 *
 * Usage (from the repository root): node --import tsx scripts/services/s3-wait.ts <timeout-seconds>
 * Exit code 0 when ready, 1 with the last error on stderr otherwise.
 */
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return `${error.name}${status ? ` (HTTP ${status})` : ''}: ${error.message}`;
}

async function probe(client: S3Client, bucket: string): Promise<void> {
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (error) {
    const name = error instanceof Error ? error.name : '';
    if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw error;
  }
  const key = `.kiln-probe/${process.pid}`;
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'probe' }));
  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const text = await got.Body?.transformToString();
  if (text !== 'probe') throw new Error(`probe object read back as ${JSON.stringify(text)}`);
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
}

async function main(): Promise<number> {
  const timeoutMs = Number(process.argv[2] ?? '60') * 1000;
  const client = new S3Client({
    endpoint: env('S3_ENDPOINT'),
    region: env('S3_REGION'),
    forcePathStyle: true,
    credentials: { accessKeyId: env('S3_ACCESS_KEY_ID'), secretAccessKey: env('S3_SECRET_ACCESS_KEY') },
    requestHandler: { connectionTimeout: 2000, requestTimeout: 10_000 },
    maxAttempts: 1,
    // radosgw (Ceph 16) does not understand the SDK's default CRC32 trailers.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const deadline = Date.now() + timeoutMs;
  let lastError = 'no attempt made';
  while (Date.now() < deadline) {
    try {
      await probe(client, env('S3_BUCKET'));
      return 0;
    } catch (error) {
      lastError = describe(error);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  console.error(`s3-wait: S3 not ready after ${timeoutMs / 1000}s: ${lastError}`);
  return 1;
}

process.exitCode = await main();
