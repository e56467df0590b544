/**
 * A scratch directory per test: the archive, an extraction destination, and
 * a sentinel directory beside it that hostile archives aim at. After a
 * rejection, nothing may have appeared next to dest or inside the sentinel.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Scene {
  root: string;
  dest: string;
  sentinel: string;
  archive: string;
}

const SENTINEL_TEXT = 'must stay untouched\n';

export async function makeScene(archiveName: string, archive?: Buffer): Promise<Scene> {
  const root = await mkdtemp(join(tmpdir(), 'kiln-archive-'));
  const scene = { root, dest: join(root, 'dest'), sentinel: join(root, 'sentinel'), archive: join(root, archiveName) };
  await mkdir(scene.dest);
  await mkdir(scene.sentinel);
  await writeFile(join(scene.sentinel, 'keep.txt'), SENTINEL_TEXT);
  if (archive) await writeFile(scene.archive, archive);
  return scene;
}

export async function assertOutsideUntouched(scene: Scene): Promise<void> {
  const archiveName = scene.archive.slice(scene.root.length + 1);
  assert.deepEqual((await readdir(scene.root)).sort(), [archiveName, 'dest', 'sentinel'].sort());
  assert.deepEqual(await readdir(scene.sentinel), ['keep.txt']);
  assert.equal(await readFile(join(scene.sentinel, 'keep.txt'), 'utf8'), SENTINEL_TEXT);
}

export async function removeScene(scene: Scene): Promise<void> {
  await rm(scene.root, { recursive: true, force: true });
}
