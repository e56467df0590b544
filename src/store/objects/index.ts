import { FsObjectStore } from './fs-store.ts';
import type { FsObjectStoreConfig } from './fs-store.ts';
import type { ObjectStore } from './object-store.ts';
import { S3ObjectStore } from './s3-store.ts';
import type { S3ObjectStoreConfig } from './s3-store.ts';

export { FsObjectStore } from './fs-store.ts';
export type { FsObjectStoreConfig } from './fs-store.ts';
export { S3ObjectStore } from './s3-store.ts';
export type { S3ObjectStoreConfig } from './s3-store.ts';
export { assertValidKey, assertValidPrefix, ObjectIntegrityError, ObjectNotFoundError } from './object-store.ts';
export type { ObjectInfo, ObjectStore } from './object-store.ts';

export type ObjectStoreConfig = ({ kind: 'fs' } & FsObjectStoreConfig) | ({ kind: 's3' } & S3ObjectStoreConfig);

/** The embedded filesystem store or S3, as configured. No I/O happens until first use. */
export function createObjectStore(config: ObjectStoreConfig): ObjectStore {
  switch (config.kind) {
    case 'fs':
      return new FsObjectStore(config);
    case 's3':
      return new S3ObjectStore(config);
  }
}

/**
 * Reads the S3_* variables printed by scripts/services/start-ceph.sh (and
 * used by deployments): undefined when S3_BUCKET is not set.
 */
export function s3ConfigFromEnv(env: NodeJS.ProcessEnv = process.env): S3ObjectStoreConfig | undefined {
  if (!env.S3_BUCKET) return undefined;
  return {
    endpoint: env.S3_ENDPOINT || undefined,
    bucket: env.S3_BUCKET,
    region: env.S3_REGION || 'us-east-1',
    accessKeyId: env.S3_ACCESS_KEY_ID || undefined,
    secretAccessKey: env.S3_SECRET_ACCESS_KEY || undefined,
    forcePathStyle: env.S3_FORCE_PATH_STYLE === 'true' || env.S3_FORCE_PATH_STYLE === '1',
  };
}
