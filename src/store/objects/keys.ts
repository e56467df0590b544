/**
 * The one place object-store keys are spelled. Everything a version owns
 * lives under its prefix, so deleting a version is one prefix delete and the
 * consistency check can walk one tree:
 *
 *   owners/<owner>/versions/<version>/source.<tar.gz|zip>
 *   owners/<owner>/versions/<version>/builds/<build>/build.log
 *   owners/<owner>/versions/<version>/builds/<build>/attempt-<n>/<variant>.wasm
 *
 * Attempts get their own folder so a stale attempt can never overwrite a
 * newer one's artifact.
 */

/** The prefix of every object Kiln stores for owners. */
export const OWNERS_PREFIX = 'owners/';

export interface VersionRef {
  ownerId: string;
  /** The version's id. */
  id: string;
}

export interface BuildRef {
  ownerId: string;
  versionId: string;
  /** The build's id. */
  id: string;
}

export type SourceFormat = 'tar.gz' | 'zip';
export type ArtifactVariantName = 'original' | 'optimized';

export function versionPrefix(version: VersionRef): string {
  return `${OWNERS_PREFIX}${version.ownerId}/versions/${version.id}/`;
}

export function sourceKey(version: VersionRef, format: SourceFormat): string {
  return `${versionPrefix(version)}source.${format === 'zip' ? 'zip' : 'tar.gz'}`;
}

function buildPrefix(build: BuildRef): string {
  return `${versionPrefix({ ownerId: build.ownerId, id: build.versionId })}builds/${build.id}/`;
}

export function buildLogKey(build: BuildRef): string {
  return `${buildPrefix(build)}build.log`;
}

/** The prefix every attempt's artifacts of `build` share. */
export function attemptsPrefix(build: BuildRef): string {
  return `${buildPrefix(build)}attempt-`;
}

export function artifactKey(build: BuildRef, attempt: number, variant: ArtifactVariantName): string {
  return `${attemptsPrefix(build)}${attempt}/${variant}.wasm`;
}

const BUILD_IN_KEY = /^owners\/[^/]+\/versions\/[^/]+\/builds\/([^/]+)\//;

/** The build id a key belongs to, when it is one of a build's objects. */
export function buildIdInKey(key: string): string | undefined {
  return BUILD_IN_KEY.exec(key)?.[1];
}
