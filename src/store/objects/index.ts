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

