import { randomUUID } from 'node:crypto';
import type { QueuedVersionInput } from '../../src/queue/enqueue.ts';
import type { Executor } from '../../src/store/metadata/database.ts';
import { SqlApplicationRepository } from '../../src/store/metadata/repositories/applications.ts';
import { SqlOwnerRepository } from '../../src/store/metadata/repositories/owners.ts';

export interface ApplicationIds {
  ownerId: string;
  applicationId: string;
}

/** A new owner with one application: the rows a version needs first. */
export async function newApplication(db: Executor): Promise<ApplicationIds> {
  const owner = await new SqlOwnerRepository(db).create(`owner-${randomUUID().slice(0, 8)}`);
  const app = await new SqlApplicationRepository(db).create(owner.id, { name: 'app', notes: '' });
  return { ownerId: owner.id, applicationId: app.id };
}

/** A new version of that application, as the upload path hands it to the queue. */
export function queuedVersionInput(ids: ApplicationIds, version: string): QueuedVersionInput {
  return {
    id: randomUUID(),
    ...ids,
    version,
    phases: ['request_headers'],
    optimize: { strip: true, wasmOpt: 'O2', wizer: true, memoryCapPages: null },
    sourceKey: `owners/${ids.ownerId}/versions/x/source.tar.gz`,
    sourceSha256: 'b'.repeat(64),
    sourceSize: 123,
    sourceFormat: 'tar.gz',
  };
}
