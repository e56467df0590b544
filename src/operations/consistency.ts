import type { Database } from '../store/metadata/database.ts';
import { builds, versions } from '../store/metadata/schema.ts';
import { buildIdInKey, OWNERS_PREFIX } from '../store/objects/keys.ts';
import type { ObjectStore } from '../store/objects/object-store.ts';

export interface ConsistencyReport {
  /** Objects no row refers to (left by a failure between a delete's steps, or a crash mid-upload). */
  orphans: string[];
  /** Keys rows refer to whose object is gone: data loss to investigate. */
  missing: string[];
  /** Orphans deleted (only with `fix`). */
  deleted: string[];
  scanned: number;
}

/** Every object key a row refers to, plus the build ids whose attempts may still be uploading. */
async function references(database: Database): Promise<{ keys: Set<string>; activeBuilds: Set<string> }> {
  const keys = new Set<string>();
  for (const row of await database.db.select({ key: versions.sourceKey }).from(versions)) keys.add(row.key);
  const rows = await database.db.select({ id: builds.id, state: builds.state, artifacts: builds.artifacts, logKey: builds.logKey }).from(builds);
  const activeBuilds = new Set<string>();
  for (const row of rows) {
    if (row.logKey) keys.add(row.logKey);
    for (const record of Object.values(row.artifacts)) keys.add(record.key);
    if (row.state === 'queued' || row.state === 'running') activeBuilds.add(row.id);
  }
  return { keys, activeBuilds };
}

function isOrphan(key: string, refs: { keys: Set<string>; activeBuilds: Set<string> }): boolean {
  if (refs.keys.has(key)) return false;
  const build = buildIdInKey(key);
  // A running build's attempt artifacts are not referenced until it ends.
  return !(build && refs.activeBuilds.has(build));
}

/**
 * Compares the object store with the metadata. With `fix`, orphans are
 * deleted — but only those still unreferenced after `graceMs`, so an upload
 * whose object is written but whose row is not yet committed is left alone.
 */
export async function checkConsistency(database: Database, objects: ObjectStore, options: { fix?: boolean; graceMs?: number } = {}): Promise<ConsistencyReport> {
  const before = await references(database);
  const orphans: string[] = [];
  const present = new Set<string>();
  let scanned = 0;
  for await (const object of objects.list(OWNERS_PREFIX)) {
    scanned++;
    present.add(object.key);
    if (isOrphan(object.key, before)) orphans.push(object.key);
  }
  // A key counts as missing only if rows still point at it after the scan
  // (a version deleted meanwhile took its objects with it).
  const afterScan = await references(database);
  const missing = [...before.keys].filter((key) => !present.has(key) && afterScan.keys.has(key));
  const deleted: string[] = [];
  if (options.fix && orphans.length > 0) {
    await new Promise((resolve) => setTimeout(resolve, options.graceMs ?? 10_000));
    const afterGrace = await references(database);
    for (const key of orphans) {
      if (!isOrphan(key, afterGrace)) continue;
      await objects.delete(key);
      deleted.push(key);
    }
  }
  return { orphans, missing, deleted, scanned };
}
