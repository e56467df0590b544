/**
 * Crates the fetch phase downloaded from the operator's registry mirror
 * (src/fetch/cargo.ts, into /build/src/kiln-crates) join the build's merged
 * offline registry (./offline-registry.ts) after the fetch and before cargo
 * runs. They match Cargo.lock's checksums, so they replace a same-named
 * Debian or SDK crate; a crate the upload vendored still wins.
 */
import { lstat, readdir, rm, readlink, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FETCHED_CRATES_DIR } from './cargo-fetch.ts';
import type { BuildContext } from '../language.ts';
import { MERGED_REGISTRY_DIR } from './offline-registry.ts';

const VENDORED_PREFIX = '/build/src/vendor/';

export async function linkFetchedCrates(context: BuildContext): Promise<void> {
  const fetchedDir = join(context.sourceDir, FETCHED_CRATES_DIR);
  const fetched = await lstat(fetchedDir).catch(() => undefined);
  if (!fetched?.isDirectory()) return;
  const mergedDir = join(context.jobDir, MERGED_REGISTRY_DIR);
  let linked = 0;
  for (const entry of await readdir(fetchedDir, { withFileTypes: true })) {
    // Only the directories crates.mjs unpacked; anything else is never followed.
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const link = join(mergedDir, entry.name);
    const existing = await readlink(link).catch(() => undefined);
    if (existing?.startsWith(VENDORED_PREFIX)) continue;
    await rm(link, { force: true });
    await symlink(`/build/src/${FETCHED_CRATES_DIR}/${entry.name}`, link);
    linked++;
  }
  context.log(`kiln: ${linked} crate(s) from the registry mirror added to the offline registry`);
}
