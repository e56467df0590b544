/**
 * The edge manifest: what an edge server must run in one environment. The
 * API produces it and `kiln edge sync` consumes it, so both sides share this
 * schema (the sync validates what it receives: the network is not trusted).
 */
import { createHash } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';

// Patterns, not `format`s: the sync checks with TypeBox's compiler, which knows no formats.
const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'hex sha256 of the artifact' });
const Id = Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' });

export const ManifestEntrySchema = Type.Object({
  applicationId: Id,
  application: Type.String({ description: 'the application name (unique per owner)' }),
  ownerId: Id,
  owner: Type.String({ description: 'the owner name (unique)' }),
  deploymentId: Id,
  versionId: Id,
  version: Type.String(),
  buildId: Id,
  variant: Type.String(),
  sha256: Sha256,
  size: Type.Integer({ minimum: 0 }),
  kind: Type.Union([Type.String(), Type.Null()], { description: 'the app kind, which says which runtime runs it: proxy-wasm (a Proxy-Wasm host), wasi-command (a WASI preview 1 runner), http-component (a WASI 0.2 wasi:http host)' }),
  phases: Type.Array(Type.String()),
  config: Type.String(),
  deployedAt: Type.String({ description: 'when it was promoted (ISO 8601)' }),
  url: Type.String({ description: 'where to download the bytes, relative to the API URL' }),
});
export type ManifestEntry = Static<typeof ManifestEntrySchema>;

export const ManifestSchema = Type.Object({
  environment: Type.String(),
  applications: Type.Array(ManifestEntrySchema),
});
export type Manifest = Static<typeof ManifestSchema>;

export const artifactPath = (sha256: string): string => `/v1/edge/artifacts/${sha256}`;

/**
 * The exact bytes sent and their ETag. Entries are sorted by application id
 * so the same state always serializes (and hashes) the same way; nothing
 * time-dependent is included, so an unchanged environment keeps its ETag.
 */
export function serializeManifest(manifest: Manifest): { body: string; etag: string } {
  const sorted: Manifest = { ...manifest, applications: [...manifest.applications].sort((a, b) => a.applicationId.localeCompare(b.applicationId)) };
  const body = JSON.stringify(sorted);
  return { body, etag: `"${createHash('sha256').update(body).digest('hex')}"` };
}

/** RFC 9110 If-None-Match: a list of (possibly weak) tags, or `*`. */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false;
  return ifNoneMatch
    .split(',')
    .map((tag) => tag.trim().replace(/^W\//, ''))
    .some((tag) => tag === '*' || tag === etag);
}
