import { notFound } from '../errors.ts';
import type { Application } from '../store/metadata/repositories/applications.ts';
import type { Version } from '../store/metadata/repositories/versions.ts';
import type { UseCaseContext } from './context.ts';

/** The owner's application, or not_found (another owner's reads the same: ids are not probed). */
export async function requireApplication(context: Pick<UseCaseContext, 'applications'>, ownerId: string, applicationId: string): Promise<Application> {
  const application = await context.applications.get(ownerId, applicationId);
  if (!application) throw notFound('application', applicationId);
  return application;
}

export async function requireVersion(context: Pick<UseCaseContext, 'versions'>, ownerId: string, versionId: string): Promise<Version> {
  const version = await context.versions.get(ownerId, versionId);
  if (!version) throw notFound('version', versionId);
  return version;
}
