import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { extractArchive } from '../../src/archive/extract.ts';
import { inspectArchive } from '../../src/archive/inspect.ts';
import { DEFAULT_ARCHIVE_LIMITS } from '../../src/archive/limits.ts';
import { packDirectory, PackRefusedError, type PackRefusal } from '../../src/archive/pack.ts';
import { httpStatusOf } from '../../src/api/http-errors.ts';

const roots: string[] = [];

after(async () => {
  await Promise.all(roots.map((root) => rm(root, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'kiln-pack-'));
  roots.push(root);
  return root;
}

async function put(root: string, relPath: string, content: string, mode = 0o644): Promise<void> {
  const path = join(root, relPath);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content);
  await chmod(path, mode);
}

/** A small cargo-like project with everything pack must skip or transform. */
async function makeProject(): Promise<string> {
  const root = await tempDir();
  const project = join(root, 'app');
  await put(project, 'Cargo.toml', '[package]\nname = "app"\n');
  await put(project, 'src/main.rs', 'fn main() {}\n');
  await put(project, 'src/target/kept.rs', '// a source dir named target is source\n');
  await put(project, 'scripts/build.sh', '#!/bin/sh\n', 0o775);
  await put(project, 'target/debug/app', 'binary');
  await put(project, 'node_modules/x/index.js', 'x');
  await put(project, '.git/HEAD', 'ref: refs/heads/main\n');
  await put(project, 'crates/sub/Cargo.toml', '[package]\nname = "sub"\n');
  await put(project, 'crates/sub/target/out', 'build output');
  await put(project, 'notes/secret.txt', 'ignored by the callback');
  await mkdir(join(project, 'empty'));
  await symlink('src/main.rs', join(project, 'main-link.rs'));
  return project;
}

async function expectRefused(promise: Promise<unknown>, reason: PackRefusal, path: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof PackRefusedError, String(error));
    assert.equal(error.reason, reason);
    assert.equal(error.code, `pack_${reason}`);
    assert.equal(error.path, path);
    assert.ok(error.message.includes(JSON.stringify(path)), error.message);
    return true;
  });
}

describe('packDirectory', () => {
  it('packs what the server accepts, skipping build output, and round-trips through extraction', async () => {
    const project = await makeProject();
    const ignore = (relPath: string): boolean => relPath === 'notes';
    const packed = await packDirectory(project, { ignore });
    const out = await tempDir();
    await writeFile(join(out, 'app.tar.gz'), packed.archive);
    const summary = await inspectArchive(join(out, 'app.tar.gz'));
    assert.deepEqual(
      [...summary.files].sort(),
      ['Cargo.toml', 'crates/sub/Cargo.toml', 'main-link.rs', 'scripts/build.sh', 'src/main.rs', 'src/target/kept.rs'],
    );
    assert.equal(summary.entries, packed.entries);
    assert.equal(summary.totalBytes, packed.bytes);
    await extractArchive(join(out, 'app.tar.gz'), join(out, 'dest'));
    // The internal symlink became a regular file with its target's content.
    assert.equal(await readFile(join(out, 'dest/main-link.rs'), 'utf8'), 'fn main() {}\n');
    assert.equal((await stat(join(out, 'dest/scripts/build.sh'))).mode & 0o777, 0o755);
    assert.equal((await stat(join(out, 'dest/src/main.rs'))).mode & 0o777, 0o644);
    assert.ok((await stat(join(out, 'dest/empty'))).isDirectory());
  });

  it('is deterministic: same tree, same bytes, whatever the mtimes', async () => {
    const project = await makeProject();
    const first = await packDirectory(project);
    await utimes(join(project, 'src/main.rs'), new Date('2001-02-03'), new Date('2001-02-03'));
    const second = await packDirectory(project);
    assert.ok(first.archive.equals(second.archive));
  });

  it('refuses a symlink pointing outside the directory, naming it', async () => {
    const project = await makeProject();
    await symlink('/etc/passwd', join(project, 'src/passwd'));
    await expectRefused(packDirectory(project), 'symlink_outside', 'src/passwd');
    await rm(join(project, 'src/passwd'));
    await symlink('../../outside.txt', join(project, 'src/up'));
    await writeFile(join(dirname(project), 'outside.txt'), 'outside');
    await expectRefused(packDirectory(project), 'symlink_outside', 'src/up');
  });

  it('refuses dangling and directory symlinks', async () => {
    const project = await makeProject();
    await symlink('nowhere', join(project, 'dangling'));
    await expectRefused(packDirectory(project), 'dangling_symlink', 'dangling');
    await rm(join(project, 'dangling'));
    await symlink('src', join(project, 'src-link'));
    await expectRefused(packDirectory(project), 'directory_symlink', 'src-link');
  });

  it('refuses names the server would refuse, and archives over the limits', async () => {
    const project = await makeProject();
    await put(project, 'win\\path.txt', 'x');
    await expectRefused(packDirectory(project), 'invalid_path', 'win\\path.txt');
    await rm(join(project, 'win\\path.txt'));
    await put(project, 'big.bin', 'x'.repeat(10_000));
    await expectRefused(packDirectory(project, { limits: { ...DEFAULT_ARCHIVE_LIMITS, maxFileBytes: 5000 } }), 'file_too_large', 'big.bin');
    await assert.rejects(packDirectory(project, { limits: { ...DEFAULT_ARCHIVE_LIMITS, maxCompressedBytes: 100 } }), (error: unknown) => {
      assert.ok(error instanceof PackRefusedError);
      assert.equal(error.reason, 'archive_too_large');
      assert.equal(httpStatusOf(error), 413);
      return true;
    });
  });
});
