import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openPglite, openPostgres, type Database } from '../../src/store/metadata/database.ts';

/**
 * The suites run against the embedded defaults AND the real servers that
 * scripts/test.sh starts. Outside `npm test` the real ones may be absent:
 * then they are skipped with a reason, except in CI where that is a failure.
 */
export interface Backend<T> {
  name: string;
  /** A reason to skip, when the backend is not available outside CI. */
  skip: string | false;
  open(): Promise<T>;
}

function missing(what: string, variable: string): string | false {
  if (process.env[variable]) return false;
  if (process.env.CI) throw new Error(`${variable} is not set: ${what} was not started (run the suite through npm test)`);
  return `${variable} is not set (start ${what}, or run npm test)`;
}

/** A fresh, empty database on the test server, so test files can run in parallel. */
export async function freshPostgresUrl(): Promise<string> {
  const baseUrl = process.env.KILN_TEST_DATABASE_URL;
  if (!baseUrl) throw new Error('KILN_TEST_DATABASE_URL is not set');
  const name = `kiln_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export function databaseBackends(): Backend<Database>[] {
  return [
    { name: 'PGlite', skip: false, open: () => openPglite(undefined) },
    { name: 'PostgreSQL', skip: missing('the PostgreSQL test server', 'KILN_TEST_DATABASE_URL'), open: async () => openPostgres(await freshPostgresUrl()) },
  ];
}

export interface S3TestSettings {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** S3 settings with a bucket of its own, so parallel test files never share objects. */
export function s3TestSettings(): S3TestSettings {
  const env = process.env;
  if (!env.KILN_TEST_S3_ENDPOINT || !env.KILN_TEST_S3_ACCESS_KEY_ID || !env.KILN_TEST_S3_SECRET_ACCESS_KEY) throw new Error('KILN_TEST_S3_* is not set');
  return {
    endpoint: env.KILN_TEST_S3_ENDPOINT,
    bucket: `kiln-test-${randomBytes(5).toString('hex')}`,
    region: env.KILN_TEST_S3_REGION ?? 'us-east-1',
    accessKeyId: env.KILN_TEST_S3_ACCESS_KEY_ID,
    secretAccessKey: env.KILN_TEST_S3_SECRET_ACCESS_KEY,
  };
}

export function s3Skip(): string | false {
  return missing('the Ceph radosgw S3 test server', 'KILN_TEST_S3_ENDPOINT');
}
