/**
 * Crates from an operator-configured Cargo registry mirror (a sparse
 * registry: `config.json` with a `dl` download URL) for the fetch phase.
 *
 * Locked crates need no index resolution: Cargo.lock already names each
 * crate's version and the sha256 of its .crate. So the fetch step only reads
 * the registry's config.json and downloads each locked crate not vendored by
 * the upload (src/fetch/sandbox/crates.mjs, inside the fetch sandbox), checks
 * it against the lock's checksum and unpacks it into
 * `/build/src/kiln-crates/<name>-<version>/` with the `.cargo-checksum.json` of
 * a cargo directory source. The Rust language then adds those crates to the
 * build's offline registry, and cargo — any version, 1.63 included — builds
 * offline as always, checking the package checksums once more.
 */
import { writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { buildFailure } from '../../build-kit/failure.ts';
import { isDirectory, readSmallText } from '../files.ts';
import { parseToml, tomlString } from '../toml.ts';
import type { BuildContext } from '../language.ts';
import { KILN_DIR } from '../../build-kit/paths.ts';
import type { FetchConfig } from '../../fetch/config.ts';
import { egressTargetOf } from '../../fetch/egress-rules.ts';
import type { FetchPlan } from '../../fetch/fetch-phase.ts';

/** Under /build/src: what the fetch leaves, and what the Rust language links into its registry. */
export const FETCHED_CRATES_DIR = 'kiln-crates';
const CRATE_LIST = 'crates-to-fetch.json';
const MAX_LOCK_BYTES = 4 * 1024 ** 2;
/** More crates than any filter needs; a bound on what one lock can make Kiln download. */
const MAX_CRATES = 2000;
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const VERSION = /^[0-9A-Za-z.+-]{1,64}$/;
const CHECKSUM = /^[0-9a-f]{64}$/;

export interface LockedCrate {
  name: string;
  version: string;
  checksum: string;
}

/** undefined when no mirror is configured, there is no Cargo.lock, or every locked crate is vendored. */
export async function cargoFetchPlan(context: BuildContext, config: FetchConfig): Promise<FetchPlan | undefined> {
  const registry = config.cargoRegistry;
  if (registry === undefined) return undefined;
  const lockText = await readSmallText(join(context.sourceDir, 'Cargo.lock'), MAX_LOCK_BYTES);
  if (lockText === undefined) return undefined;
  const crates: LockedCrate[] = [];
  for (const crate of lockedRegistryCrates(lockText)) {
    if (!(await isVendored(context.sourceDir, crate))) crates.push(crate);
  }
  if (crates.length === 0) return undefined;
  if (crates.length > MAX_CRATES) throw buildFailure(`Cargo.lock names ${crates.length} registry crates; at most ${MAX_CRATES} are fetched`);
  await writeFile(join(context.jobDir, KILN_DIR, CRATE_LIST), JSON.stringify(crates));
  context.log(`kiln: ${crates.length} locked crate(s) to fetch from the registry mirror ${registry.href}`);
  return {
    tool: 'cargo registry mirror',
    allowed: [egressTargetOf(registry)],
    command: [process.execPath, '/opt/kiln/fetch/crates.mjs', registry.href, `/build/${KILN_DIR}/${CRATE_LIST}`, `/build/src/${FETCHED_CRATES_DIR}`],
    env: { PATH: '/usr/bin:/bin', HOME: '/build/home', TMPDIR: '/build/tmp', LANG: 'C.UTF-8' },
    mounts: [],
    outputs: [FETCHED_CRATES_DIR],
    cacheKey: createHash('sha256').update(`cargo-mirror-v1\0${registry.href}\0`).update(JSON.stringify(crates)).digest('hex'),
    failureReason: (output) => /^kiln crates: (.+)$/m.exec(output)?.[1]?.slice(0, 300),
  };
}

/**
 * `[[package]]` entries from a registry (crates.io or a sparse index) with a
 * checksum; path and git dependencies have neither. Odd names are the
 * upload's mistake, not something to pass to a URL.
 */
export function lockedRegistryCrates(lockText: string): LockedCrate[] {
  const table = parseToml(lockText);
  const crates: LockedCrate[] = [];
  for (let index = 0; tomlString(table, `package.${index}.name`) !== undefined; index++) {
    const source = tomlString(table, `package.${index}.source`) ?? '';
    if (!source.startsWith('registry+') && !source.startsWith('sparse+')) continue;
    const crate = { name: tomlString(table, `package.${index}.name`) ?? '', version: tomlString(table, `package.${index}.version`) ?? '', checksum: tomlString(table, `package.${index}.checksum`) ?? '' };
    if (!NAME.test(crate.name) || !VERSION.test(crate.version) || !CHECKSUM.test(crate.checksum)) {
      throw buildFailure(`Cargo.lock: the registry package ${JSON.stringify(crate.name).slice(0, 80)} ${JSON.stringify(crate.version).slice(0, 40)} has no valid name, version or checksum`);
    }
    crates.push(crate);
  }
  return crates;
}

/** `cargo vendor` names a crate's directory `<name>` or `<name>-<version>`: the upload's copy wins. */
async function isVendored(sourceDir: string, crate: LockedCrate): Promise<boolean> {
  return (await isDirectory(join(sourceDir, 'vendor', `${crate.name}-${crate.version}`))) || (await isDirectory(join(sourceDir, 'vendor', crate.name)));
}
