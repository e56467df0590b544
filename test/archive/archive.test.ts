import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, readFile, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { PlatformError } from '../../src/errors.ts';
import { extractArchive } from '../../src/archive/extract.ts';
import { detectFormat, inspectArchive, inspectArchiveBytes } from '../../src/archive/inspect.ts';
import { ArchiveRejectedError, DEFAULT_ARCHIVE_LIMITS, displayName, type ArchiveLimits, type ArchiveRejectReason } from '../../src/archive/limits.ts';
import { END_OF_TAR, gzipZeros, manyEntriesTarGz, tarBytes, tarGz, ustarHeader, zeroFilesTarGz, type TarEntrySpec } from './fixtures-tar.ts';
import { buildZip, deflatedZeros, patchUncompressedSize, yazlZip, type ZipEntrySpec } from './fixtures-zip.ts';
import { assertOutsideUntouched, makeScene, removeScene, type Scene } from './fixtures-scene.ts';
import { httpStatusOf } from '../../src/api/http-errors.ts';

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const scenes: Scene[] = [];

after(async () => {
  await Promise.all(scenes.map(removeScene));
});

async function scene(archiveName: string, archive?: Buffer): Promise<Scene> {
  const created = await makeScene(archiveName, archive);
  scenes.push(created);
  return created;
}

interface Expectation {
  reason: ArchiveRejectReason;
  /** The entry the error must name; undefined when it is about the whole archive. */
  entry?: string;
  message?: RegExp;
}

/**
 * Both inspection and extraction must refuse, with the same reason and entry,
 * and nothing may appear outside dest. Returns the inspection error.
 */
async function expectRejected(archiveName: string, archive: Buffer, expected: Expectation, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS): Promise<ArchiveRejectedError> {
  const where = await scene(archiveName, archive);
  const inspected = await rejection(inspectArchive(where.archive, limits), expected);
  // An upload held in memory is refused exactly as one on disk.
  await rejection(inspectArchiveBytes(archive, limits), expected);
  await rejection(extractArchive(where.archive, where.dest, limits), expected);
  await assertOutsideUntouched(where);
  return inspected;
}

async function rejection(promise: Promise<unknown>, expected: Expectation): Promise<ArchiveRejectedError> {
  const error = await promise.then(
    () => assert.fail(`expected a rejection for ${expected.reason}`),
    (failure: unknown) => failure,
  );
  assert.ok(error instanceof ArchiveRejectedError, `not an ArchiveRejectedError: ${String(error)}`);
  assert.equal(error.reason, expected.reason, error.message);
  assert.equal(error.code, `archive_${expected.reason}`);
  assert.equal(error.entry, expected.entry, error.message);
  if (expected.entry !== undefined) assert.ok(error.message.startsWith(`entry ${JSON.stringify(expected.entry)}: `), error.message);
  if (expected.message) assert.match(error.message, expected.message);
  assert.ok([413, 415, 422].includes(httpStatusOf(error)));
  return error;
}

const both = [
  { format: 'tar.gz', file: 'upload.tar.gz', make: async (entries: TarEntrySpec[]) => tarGz(entries) },
  { format: 'zip', file: 'upload.zip', make: async (entries: TarEntrySpec[]) => buildZip(entries.map(toZipSpec)) },
] as const;

function toZipSpec(entry: TarEntrySpec): ZipEntrySpec {
  const content = entry.content === undefined ? undefined : Buffer.from(entry.content);
  return { name: entry.pax?.path ?? entry.name, ...(content ? { content } : {}) };
}

const payload = randomBytes(300_000);
const validFiles: Record<string, { content: Buffer; executable?: boolean }> = {
  'README.md': { content: Buffer.from('# hello\n') },
  'src/main.rs': { content: Buffer.from('fn main() {}\n') },
  'src/deep/a/b/c.txt': { content: Buffer.from('deep') },
  'bin/run.sh': { content: Buffer.from('#!/bin/sh\necho hi\n'), executable: true },
  'data/blob.bin': { content: payload },
  'empty.txt': { content: Buffer.alloc(0) },
  'ünïcødé/名前.txt': { content: Buffer.from('utf-8 names') },
};

async function assertExtracted(dest: string): Promise<void> {
  for (const [path, expected] of Object.entries(validFiles)) {
    const absolute = join(dest, path);
    assert.deepEqual(await readFile(absolute), expected.content, path);
    assert.equal((await stat(absolute)).mode & 0o7777, expected.executable ? 0o755 : 0o644, path);
  }
  assert.equal((await stat(join(dest, 'emptydir'))).mode & 0o7777, 0o755);
  assert.deepEqual(await readdir(join(dest, 'emptydir')), []);
  assert.equal((await stat(join(dest, 'src/deep'))).mode & 0o7777, 0o755);
}

const expectedTotal = Object.values(validFiles).reduce((sum, file) => sum + file.content.length, 0);

describe('valid archives', () => {
  it('round-trips a tar.gz: inspect, extract, same bytes, sanitized modes', async () => {
    const entries: TarEntrySpec[] = [
      { name: './', type: 'directory' },
      { name: './src/', type: 'directory', mode: 0o777 },
      { name: 'emptydir', type: 'directory' },
      ...Object.entries(validFiles).map(([name, file]) => ({
        name: name === 'README.md' ? `./${name}` : name,
        content: file.content,
        // setuid and group-write must not survive; 0600 becomes 0644.
        mode: file.executable ? 0o4775 : 0o600,
      })),
    ];
    const where = await scene('upload.tar.gz', await tarGz(entries));
    assert.equal(await detectFormat(where.archive), 'tar.gz');
    const summary = await inspectArchive(where.archive);
    assert.equal(summary.format, 'tar.gz');
    assert.equal(summary.entries, entries.length);
    assert.equal(summary.fileCount, Object.keys(validFiles).length);
    assert.equal(summary.totalBytes, expectedTotal);
    assert.ok(summary.files.includes('README.md') && summary.files.includes('src/main.rs'));
    assert.equal(summary.filesTruncated, false);
    const extracted = await extractArchive(where.archive, where.dest);
    assert.deepEqual(extracted, summary);
    assert.deepEqual(await inspectArchiveBytes(await readFile(where.archive)), summary, 'the same archive inspected from memory');
    await assertExtracted(where.dest);
    await assertOutsideUntouched(where);
  });

  it('round-trips a zip written by yazl', async () => {
    const zip = await yazlZip([
      { name: 'emptydir/', directory: true },
      ...Object.entries(validFiles).map(([name, file]) => ({ name, content: file.content, mode: file.executable ? 0o104775 : 0o100600 })),
    ]);
    const where = await scene('upload.zip', zip);
    assert.equal(await detectFormat(where.archive), 'zip');
    const summary = await inspectArchive(where.archive);
    assert.equal(summary.format, 'zip');
    assert.equal(summary.fileCount, Object.keys(validFiles).length);
    assert.equal(summary.directoryCount, 1);
    assert.equal(summary.totalBytes, expectedTotal);
    assert.deepEqual(await inspectArchiveBytes(zip), summary, 'the same archive inspected from memory');
    await extractArchive(where.archive, where.dest);
    await assertExtracted(where.dest);
    await assertOutsideUntouched(where);
  });

  it('treats an archive inside the archive as an opaque file', async () => {
    const inner = buildZip([{ name: 'bomb.bin', precompressed: deflatedZeros(GIB) }]);
    const where = await scene('upload.tar.gz', await tarGz([{ name: 'inner.zip', content: inner }]));
    const summary = await extractArchive(where.archive, where.dest);
    assert.equal(summary.totalBytes, inner.length);
    assert.deepEqual(await readFile(join(where.dest, 'inner.zip')), inner);
  });

  it('caps the listed files but keeps exact counts', async () => {
    const entries = Array.from({ length: 1005 }, (_, index) => ({ name: `f${index}`, content: '' }));
    const where = await scene('upload.tar.gz', await tarGz(entries));
    const summary = await inspectArchive(where.archive);
    assert.equal(summary.fileCount, 1005);
    assert.equal(summary.files.length, 1000);
    assert.equal(summary.filesTruncated, true);
  });
});

describe('not an archive', () => {
  it('refuses a text file, an empty file and a plain tar as unsupported (415)', async () => {
    const text = await expectRejected('upload.tar.gz', Buffer.from('just some text, not an archive\n'), { reason: 'unsupported_format' });
    assert.equal(httpStatusOf(text), 415);
    await expectRejected('upload.zip', Buffer.alloc(0), { reason: 'unsupported_format', message: /empty/ });
    await expectRejected('upload.tar', await tarBytes([{ name: 'a', content: 'x' }]), { reason: 'unsupported_format', message: /uncompressed tar/ });
  });

  it('refuses a truncated gzip and a truncated zip as corrupt', async () => {
    const good = await tarGz([{ name: 'a.bin', content: randomBytes(100_000) }]);
    // Cut inside the file's data: the error names the entry being read.
    await expectRejected('upload.tar.gz', good.subarray(0, Math.floor(good.length / 2)), { reason: 'corrupt_archive', entry: 'a.bin', message: /unexpected end of file/ });
    const goodZip = buildZip([{ name: 'a.bin', content: randomBytes(10_000) }]);
    await expectRejected('upload.zip', goodZip.subarray(0, goodZip.length - 30), { reason: 'corrupt_archive' });
  });

  it('refuses gzip data that is not a tar', async () => {
    await expectRejected('upload.tar.gz', gzipSync(Buffer.from('x'.repeat(2000))), { reason: 'corrupt_archive' });
  });

  it('refuses an archive file bigger than maxCompressedBytes (413) before reading it', async () => {
    const archive = await tarGz([{ name: 'a.bin', content: randomBytes(5000) }]);
    const error = await expectRejected('upload.tar.gz', archive, { reason: 'archive_too_large' }, { ...DEFAULT_ARCHIVE_LIMITS, maxCompressedBytes: 1000 });
    assert.equal(httpStatusOf(error), 413);
    assert.equal(error.details.compressedBytesRead, 0);
  });
});

describe('hostile paths', () => {
  for (const { format, file, make } of both) {
    it(`${format}: refuses ../ traversal, naming the entry`, async () => {
      const archive = await make([
        { name: 'ok.txt', content: 'fine' },
        { name: '../sentinel/pwned', content: 'pwned' },
      ]);
      const error = await expectRejected(file, archive, { reason: 'path_traversal', entry: '../sentinel/pwned', message: /leaves the archive root/ });
      assert.equal(httpStatusOf(error), 422);
      await expectRejected(file, await make([{ name: 'a/../../sentinel/pwned', content: 'x' }]), { reason: 'path_traversal', entry: 'a/../../sentinel/pwned' });
    });

    it(`${format}: refuses absolute paths and drive letters`, async () => {
      const where = await scene('probe');
      const absolute = join(where.sentinel, 'pwned');
      await expectRejected(file, await make([{ name: absolute, content: 'pwned' }]), { reason: 'absolute_path', entry: absolute });
      await expectRejected(file, await make([{ name: 'C:/Windows/pwned', content: 'x' }]), { reason: 'absolute_path', entry: 'C:/Windows/pwned' });
    });

    it(`${format}: refuses backslashes, NUL, control characters`, async () => {
      await expectRejected(file, await make([{ name: '..\\..\\pwned', content: 'x' }]), { reason: 'invalid_path', entry: '..\\..\\pwned', message: /backslash/ });
      await expectRejected(file, await make([{ name: 'placeholder', pax: { path: 'a\u0000b' }, content: 'x' }]), { reason: 'invalid_path', entry: 'a\u0000b', message: /NUL/ });
      await expectRejected(file, await make([{ name: 'evil\nname', content: 'x' }]), { reason: 'invalid_path', entry: 'evil\nname', message: /control/ });
    });

    it(`${format}: refuses duplicate paths and file/directory conflicts`, async () => {
      await expectRejected(file, await make([{ name: 'a.txt', content: '1' }, { name: './a.txt', content: '2' }]), { reason: 'duplicate_path', entry: './a.txt' });
      await expectRejected(file, await make([{ name: 'a', content: '1' }, { name: 'a/b', content: '2' }]), { reason: 'path_conflict', entry: 'a/b' });
      await expectRejected(file, await make([{ name: 'a/b', content: '1' }, { name: 'a', content: '2' }]), { reason: 'path_conflict', entry: 'a' });
    });

    it(`${format}: refuses too long and too deep paths`, async () => {
      const long = ['x', 'y', 'z', 'w', 'v', 'u'].map((letter) => letter.repeat(200)).join('/');
      // Names in errors are cut to keep messages bounded.
      await expectRejected(file, await make([{ name: long, content: 'x' }]), { reason: 'path_too_long', entry: displayName(long) });
      const component = 'c'.repeat(300);
      await expectRejected(file, await make([{ name: component, content: 'x' }]), { reason: 'path_too_long', entry: displayName(component), message: /component/ });
      const deep = `${'d/'.repeat(70)}f`;
      await expectRejected(file, await make([{ name: deep, content: 'x' }]), { reason: 'path_too_deep', entry: deep });
    });
  }

  it('zip: refuses names that are not UTF-8 and names that disagree with a Unicode Path field', async () => {
    const latin1 = Buffer.from('caf\xe9.txt', 'latin1');
    await expectRejected('upload.zip', buildZip([{ name: latin1, content: Buffer.from('x') }]), { reason: 'invalid_path', entry: 'caf\xe9.txt', message: /UTF-8/ });
    const other = Buffer.from('../pwned');
    const field = Buffer.alloc(4 + 5 + other.length);
    field.writeUInt16LE(0x7075, 0);
    field.writeUInt16LE(5 + other.length, 2);
    field.writeUInt8(1, 4);
    other.copy(field, 9);
    await expectRejected('upload.zip', buildZip([{ name: 'innocent.txt', content: Buffer.from('x'), centralExtra: field }]), { reason: 'invalid_path', entry: 'innocent.txt', message: /second, different name/ });
  });

  it('refuses a file entry without a name', async () => {
    await expectRejected('upload.zip', buildZip([{ name: './', content: Buffer.from('x') }]), { reason: 'corrupt_archive', entry: './' });
    await expectRejected('upload.zip', buildZip([{ name: '', content: Buffer.from('x') }]), { reason: 'invalid_path', entry: '', message: /must have a name/ });
    await expectRejected('upload.tar.gz', await tarGz([{ name: '.', content: 'x' }]), { reason: 'invalid_path', entry: '.' });
  });

  it('tar: refuses a directory entry that carries data (readers disagree on what follows)', async () => {
    const archive = Buffer.concat([ustarHeader({ name: 'dir/', typeflag: '5', size: 512 }), ustarHeader({ name: 'hidden.txt' }), END_OF_TAR]);
    await expectRejected('upload.tar.gz', gzipSync(archive), { reason: 'corrupt_archive', entry: 'dir/', message: /directory entry carries 512 bytes/ });
  });

  it('tar: refuses names that are not UTF-8', async () => {
    const header = ustarHeader({ name: Buffer.from('caf\xe9.txt', 'latin1') });
    await expectRejected('upload.tar.gz', gzipSync(Buffer.concat([header, END_OF_TAR])), { reason: 'invalid_path', entry: 'caf\uFFFD.txt' });
  });

  it('zip: refuses a local header that names another file than the central directory', async () => {
    const zip = buildZip([{ name: 'innocent.txt', localName: '../../pwned.txt', content: Buffer.from('x') }]);
    await expectRejected('upload.zip', zip, { reason: 'corrupt_archive', entry: 'innocent.txt', message: /local header/ });
  });
});

describe('links and special files', () => {
  it('tar: refuses a symlink (and never gets to the file written through it)', async () => {
    const archive = await tarGz([
      { name: 'link', type: 'symlink', linkname: '../sentinel' },
      { name: 'link/pwned', content: 'pwned' },
    ]);
    await expectRejected('upload.tar.gz', archive, { reason: 'symlink', entry: 'link', message: /"\.\.\/sentinel"/ });
  });

  it('zip: refuses a symlink entry (Unix mode 0120777)', async () => {
    const zip = buildZip([
      { name: 'link', content: Buffer.from('../sentinel'), unixMode: 0o120777 },
      { name: 'link/pwned', content: Buffer.from('pwned') },
    ]);
    await expectRejected('upload.zip', zip, { reason: 'symlink', entry: 'link' });
  });

  it('tar: refuses a hard link', async () => {
    const archive = await tarGz([{ name: 'passwd', type: 'link', linkname: '/etc/passwd' }]);
    await expectRejected('upload.tar.gz', archive, { reason: 'hard_link', entry: 'passwd', message: /\/etc\/passwd/ });
  });

  it('tar: refuses character and block devices, FIFOs and unknown entry types', async () => {
    await expectRejected('upload.tar.gz', await tarGz([{ name: 'null', type: 'character-device', devmajor: 1, devminor: 3 }]), { reason: 'special_file', entry: 'null' });
    await expectRejected('upload.tar.gz', await tarGz([{ name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 }]), { reason: 'special_file', entry: 'sda' });
    await expectRejected('upload.tar.gz', await tarGz([{ name: 'pipe', type: 'fifo' }]), { reason: 'special_file', entry: 'pipe' });
    const sparse = gzipSync(Buffer.concat([ustarHeader({ name: 'sparse', typeflag: 'S' }), END_OF_TAR]));
    await expectRejected('upload.tar.gz', sparse, { reason: 'special_file', entry: 'sparse' });
  });

  it('zip: refuses device and FIFO modes', async () => {
    await expectRejected('upload.zip', buildZip([{ name: 'null', content: Buffer.alloc(0), unixMode: 0o020666 }]), { reason: 'special_file', entry: 'null' });
    await expectRejected('upload.zip', buildZip([{ name: 'pipe', content: Buffer.alloc(0), unixMode: 0o010644 }]), { reason: 'special_file', entry: 'pipe' });
  });

  it('zip: refuses encrypted entries and unknown compression methods', async () => {
    await expectRejected('upload.zip', buildZip([{ name: 'secret', content: Buffer.from('x'), flags: 0x1 }]), { reason: 'encrypted_entry', entry: 'secret' });
    await expectRejected('upload.zip', buildZip([{ name: 'lzma', content: Buffer.from('x'), method: 14 }]), { reason: 'unsupported_compression', entry: 'lzma' });
  });
});

describe('bombs and entry floods', () => {
  it('tar.gz: a 1 GiB file in ~1 MB is refused from its header, reading almost nothing', async () => {
    const bomb = zeroFilesTarGz(['bomb.bin'], GIB);
    assert.ok(bomb.length < 1.2 * MIB);
    const error = await expectRejected('upload.tar.gz', bomb, { reason: 'file_too_large', entry: 'bomb.bin' });
    assert.equal(httpStatusOf(error), 413);
    assert.ok(error.details.compressedBytesRead < bomb.length / 4, JSON.stringify(error.details));
    assert.ok(error.details.uncompressedBytesRead < 8 * MIB, JSON.stringify(error.details));
  });

  it('tar.gz: 1 GiB spread over many files stops at the total limit, not at the end', async () => {
    const names = Array.from({ length: 128 }, (_, index) => `part-${String(index).padStart(3, '0')}`);
    const bomb = zeroFilesTarGz(names, 8 * MIB);
    const limits = { ...DEFAULT_ARCHIVE_LIMITS, maxFileBytes: 8 * MIB, maxTotalBytes: 20 * MIB };
    const error = await expectRejected('upload.tar.gz', bomb, { reason: 'total_too_large', entry: 'part-002' }, limits);
    assert.ok(error.details.uncompressedBytesRead <= 20 * MIB + 4 * 512 + 64 * 1024, JSON.stringify(error.details));
    assert.ok(error.details.compressedBytesRead < bomb.length / 4, JSON.stringify(error.details));
  });

  it('tar.gz: a gzip of 1 GiB of zeros (no entries at all) is cut off by the stream cap', async () => {
    const zeros = Buffer.concat(gzipZeros(GIB));
    const limits = { ...DEFAULT_ARCHIVE_LIMITS, maxTotalBytes: 4 * MIB, maxEntries: 100 };
    const error = await expectRejected('upload.tar.gz', zeros, { reason: 'total_too_large', message: /tar stream/ }, limits);
    assert.ok(error.details.uncompressedBytesRead < 8 * MIB, JSON.stringify(error.details));
  });

  it('zip: an honest 1 GiB entry is refused from the central directory, before inflating a byte', async () => {
    const bomb = buildZip([{ name: 'bomb.bin', precompressed: deflatedZeros(GIB) }]);
    assert.ok(bomb.length < 1.2 * MIB);
    const error = await expectRejected('upload.zip', bomb, { reason: 'file_too_large', entry: 'bomb.bin' });
    assert.equal(error.details.uncompressedBytesRead, 0);
  });

  it('zip: a 1 GiB entry whose headers claim 1 KiB is stopped at the first chunk past the claim', async () => {
    const bomb = buildZip([{ name: 'liar.bin', precompressed: deflatedZeros(GIB), centralUncompressedSize: 1024, localUncompressedSize: 1024 }]);
    const error = await expectRejected('upload.zip', bomb, { reason: 'size_mismatch', entry: 'liar.bin', message: /1024 bytes/ });
    assert.ok(error.details.uncompressedBytesRead <= 1024 + 64 * 1024, JSON.stringify(error.details));
    assert.ok(error.details.compressedBytesRead < bomb.length / 4, JSON.stringify(error.details));
  });

  it('zip: a central directory that lies about the size (hand-patched yazl zip) is caught both ways', async () => {
    const zip = await yazlZip([{ name: 'ok.txt', content: Buffer.from('fine') }, { name: 'data.bin', content: Buffer.alloc(200_000, 7) }]);
    await expectRejected('upload.zip', patchUncompressedSize(zip, 'data.bin', 100), { reason: 'size_mismatch', entry: 'data.bin', message: /more than the 100 bytes/ });
    await expectRejected('upload.zip', patchUncompressedSize(zip, 'data.bin', 300_000), { reason: 'size_mismatch', entry: 'data.bin', message: /200000 bytes but its headers declare 300000/ });
  });

  it('zip: overlapping entries (one local file shared by many records) are refused before inflating', async () => {
    const shared = deflatedZeros(16 * MIB);
    const entries: ZipEntrySpec[] = [{ name: 'f00', precompressed: shared }];
    for (let index = 1; index < 25; index += 1) entries.push({ name: `f${String(index).padStart(2, '0')}`, precompressed: shared, sharesLocalHeaderOf: 0 });
    const error = await expectRejected('upload.zip', buildZip(entries), { reason: 'overlapping_entries', entry: 'f01', message: /"f00"/ });
    assert.equal(error.details.uncompressedBytesRead, 0);
  });

  it('tar.gz: 100,000 entries are refused at the first one over the limit', async () => {
    const flood = manyEntriesTarGz(100_000);
    const where = await scene('upload.tar.gz', flood);
    await rejection(inspectArchive(where.archive), { reason: 'too_many_entries', entry: 'f20000' });
    // Tar is streamed, so extraction writes the files before the limit is
    // reached; a lower limit keeps creating them quick.
    await expectRejected('upload.tar.gz', flood, { reason: 'too_many_entries', entry: 'f500' }, { ...DEFAULT_ARCHIVE_LIMITS, maxEntries: 500 });
  });

  it('zip: 100,000 entries (zip64) are refused at the first one over the limit', async () => {
    const entries = Array.from({ length: 100_000 }, (_, index): ZipEntrySpec => ({ name: `f${index}`, method: 0 }));
    await expectRejected('upload.zip', buildZip(entries), { reason: 'too_many_entries', entry: 'f20000' });
  });
});

describe('extraction into the destination', () => {
  it('refuses to write through a pre-existing directory symlink in destDir', async () => {
    const where = await scene('upload.tar.gz', await tarGz([{ name: 'src/main.rs', content: 'pwned' }]));
    await symlink(where.sentinel, join(where.dest, 'src'));
    await assert.rejects(extractArchive(where.archive, where.dest), (error: unknown) => {
      assert.ok(error instanceof PlatformError);
      assert.equal(error.code, 'archive_unsafe_destination');
      assert.match(error.message, /"src" is a symbolic link/);
      return true;
    });
    await assertOutsideUntouched(where);
  });

  it('refuses to write through a pre-existing file symlink in destDir', async () => {
    const where = await scene('upload.zip', buildZip([{ name: 'keep.txt', content: Buffer.from('pwned') }]));
    await symlink(join(where.sentinel, 'keep.txt'), join(where.dest, 'keep.txt'));
    await assert.rejects(extractArchive(where.archive, where.dest), /already exists in the destination/);
    assert.ok((await lstat(join(where.dest, 'keep.txt'))).isSymbolicLink());
    await assertOutsideUntouched(where);
  });

  it('validates again when extracting: the file may have changed since inspection', async () => {
    const where = await scene('upload.tar.gz', await tarGz([{ name: 'ok.txt', content: 'fine' }]));
    await inspectArchive(where.archive);
    await writeFile(where.archive, await tarGz([{ name: '../sentinel/pwned', content: 'pwned' }]));
    await rejection(extractArchive(where.archive, where.dest), { reason: 'path_traversal', entry: '../sentinel/pwned' });
    await assertOutsideUntouched(where);
  });

  it('gives files 0644/0755 and directories 0755 whatever the process umask', async () => {
    const where = await scene('upload.tar.gz', await tarGz([
      { name: 'emptydir', type: 'directory' },
      ...Object.entries(validFiles).map(([name, file]) => ({ name, content: file.content, mode: file.executable ? 0o755 : 0o644 })),
    ]));
    // A umask that would strip group and other bits from everything created.
    const previous = process.umask(0o077);
    try {
      await extractArchive(where.archive, where.dest);
    } finally {
      process.umask(previous);
    }
    await assertExtracted(where.dest);
  });

  it('creates destDir when it does not exist', async () => {
    const where = await scene('upload.zip', buildZip([{ name: 'a/b.txt', content: Buffer.from('b') }]));
    const nested = join(where.dest, 'x', 'y');
    await extractArchive(where.archive, nested);
    assert.equal(await readFile(join(nested, 'a/b.txt'), 'utf8'), 'b');
  });
});
