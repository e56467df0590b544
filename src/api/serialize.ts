import type { Application } from '../store/metadata/repositories/applications.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { Version } from '../store/metadata/repositories/versions.ts';

/** Database rows → API JSON. Object keys and internal fields never leave. */

const iso = (date: Date | null): string | null => (date ? date.toISOString() : null);

export function applicationJson(app: Application) {
  return { id: app.id, name: app.name, notes: app.notes, createdAt: app.createdAt.toISOString(), updatedAt: app.updatedAt.toISOString() };
}

export function versionJson(version: Version) {
  return {
    id: version.id,
    applicationId: version.applicationId,
    version: version.version,
    language: version.language,
    kind: version.kind,
    phases: version.phases,
    config: version.config,
    notes: version.notes,
    optimize: version.optimize,
    source: { sha256: version.sourceSha256, size: version.sourceSize, format: version.sourceFormat },
    createdAt: version.createdAt.toISOString(),
    updatedAt: version.updatedAt.toISOString(),
  };
}

export function buildJson(build: Build) {
  const artifacts: Record<string, { sha256: string; size: number }> = {};
  for (const [variant, record] of Object.entries(build.artifacts)) artifacts[variant] = { sha256: record.sha256, size: record.size };
  return {
    id: build.id,
    applicationId: build.applicationId,
    versionId: build.versionId,
    number: build.number,
    state: build.state,
    reason: build.reason,
    language: build.language,
    kind: build.kind,
    attempts: build.attempts,
    cancelRequested: build.cancelRequested,
    stages: build.stages,
    artifacts,
    details: build.details,
    logBytes: build.logBytes,
    createdAt: build.createdAt.toISOString(),
    startedAt: iso(build.startedAt),
    finishedAt: iso(build.finishedAt),
    durationMs: build.startedAt && build.finishedAt ? build.finishedAt.getTime() - build.startedAt.getTime() : null,
  };
}
