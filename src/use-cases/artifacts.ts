import { conflict, notFound } from '../errors.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { ArtifactRecord } from '../store/metadata/schema.ts';
import type { UseCaseContext } from './context.ts';
import { requireVersion } from './lookups.ts';

export type VariantName = 'optimized' | 'original';

/** The optimized binary when optimization produced one, else the original. */
export function defaultVariant(build: Pick<Build, 'artifacts'>, requested: VariantName | undefined): VariantName {
  return requested ?? (build.artifacts.optimized ? 'optimized' : 'original');
}

export interface VersionArtifact {
  build: Build;
  variant: VariantName;
  record: ArtifactRecord;
}

/** The artifact a version's latest successful build produced, in the variant asked for (or the default). */
export async function latestArtifact(context: Pick<UseCaseContext, 'versions' | 'builds'>, ownerId: string, versionId: string, requested: VariantName | undefined): Promise<VersionArtifact> {
  const version = await requireVersion(context, ownerId, versionId);
  const build = await context.builds.latestSucceeded(version.id);
  if (!build) throw conflict('no_artifact', `version ${version.id} has no successful build yet; see GET /v1/builds?versionId=${version.id}`);
  const variant = defaultVariant(build, requested);
  const record = build.artifacts[variant];
  if (!record) throw notFound('artifact variant', variant);
  return { build, variant, record };
}
