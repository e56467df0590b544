/**
 * A new object's directories are durable before put() answers: every
 * directory the put created has its entry fsynced in its parent (POSIX), not
 * only the object's own directory. Watched with strace on a real put, in a
 * child process, for both ways the store writes (writer threads and the
 * stream path); the writer thread's JavaScript copy of the rule is held to
 * the store's answers. And when the fsync that makes the meta file's rename
 * durable fails, the put fails but the data the meta file names stays
 * (strace injects the error into that one call).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { parentsToSync } from '../../src/store/objects/durable-dirs.ts';
import { FsObjectStore } from '../../src/store/objects/fs-store.ts';
import { WRITER_PARENTS_TO_SYNC } from '../../src/store/objects/writer-threads.ts';

const run = promisify(execFile);
const TSX = path.resolve(import.meta.dirname, '../../node_modules/tsx/dist/esm/index.mjs');
const PUT_ONCE = path.resolve(import.meta.dirname, 'support/put-once.ts');

const CASES: Array<[string | undefined, string]> = [
  [undefined, '/store/a/b'],
  ['/store/a', '/store/a/b/c'],
  ['/store/a/b/c', '/store/a/b/c'],
  ['/store/a/./b', '/store/a/b/c/'],
  ['/elsewhere', '/store/a'],
];

describe('parentsToSync', () => {
  it('names the parent of every directory the put created, shallowest first', () => {
    assert.deepEqual(parentsToSync(undefined, '/store/a/b'), []);
    assert.deepEqual(parentsToSync('/store/a', '/store/a/b/c'), ['/store', '/store/a', '/store/a/b']);
    assert.deepEqual(parentsToSync('/store/a/b/c', '/store/a/b/c'), ['/store/a/b']);
    assert.deepEqual(parentsToSync('/elsewhere', '/store/a'), [], 'not an ancestor: nothing to add');
  });

  it("the writer thread's copy gives the same answers", () => {
    const writerCopy = new Function('path', `${WRITER_PARENTS_TO_SYNC}; return parentsToSync;`)(path) as typeof parentsToSync;
    for (const [created, dir] of CASES) assert.deepEqual(writerCopy(created, dir), parentsToSync(created, dir), `${created} → ${dir}`);
  });
});

/** The directories the traced process fsynced (fds followed through openat and close, per process). */
function fsyncedDirectories(trace: string): Set<string> {
  const open = new Map<string, string>();
  const synced = new Set<string>();
  for (const line of trace.split('\n')) {
    const opened = /^(\d+)\s+openat\(AT_FDCWD, "([^"]+)", [^)]*\)\s+= (\d+)/.exec(line);
    if (opened) open.set(`${opened[1]}:${opened[3]}`, opened[2] as string);
    const fsync = /^(\d+)\s+fsync\((\d+)\)\s+= 0/.exec(line);
    if (fsync) {
      // Threads share the descriptor table: look the fd up under any of the process's pids.
      const file = [...open.entries()].reverse().find(([key]) => key.endsWith(`:${fsync[2]}`))?.[1];
      if (file) synced.add(file);
    }
    const closed = /^(\d+)\s+close\((\d+)\)\s+= 0/.exec(line);
    if (closed) for (const key of [...open.keys()]) if (key.endsWith(`:${closed[2]}`)) open.delete(key);
  }
  return synced;
}

/** The store's two ways of writing: [label, writer threads, body kind] as put-once.ts takes them. */
const WRITE_PATHS = [
  ['on a writer thread', '2', 'buffer'],
  ['through the stream path', '0', 'stream'],
] as const;

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-durable-dirs-'));
});
after(() => rm(scratch, { recursive: true, force: true }));

/** A store root of its own for one case. */
const rootFor = (suite: string, label: string): string => path.join(scratch, `${suite}-${label.replace(/\W+/g, '-')}`);

describe('a put into new directories', { timeout: 120_000 }, () => {
  for (const [label, threads, body] of WRITE_PATHS) {
    it(`fsyncs the parent of each directory it created, ${label}`, async () => {
      const root = rootFor('synced', label);
      const traceFile = `${root}.trace`;
      await run('strace', ['-f', '-qq', '-e', 'trace=openat,fsync,close', '-o', traceFile, process.execPath, '--import', TSX, PUT_ONCE, root, 'owners/o1/versions/v1/source.tar.gz', threads, body]);
      const synced = fsyncedDirectories(await readFile(traceFile, 'utf8'));
      // The store made its root; the put made owners/o1/versions/v1 under it.
      for (const dir of ['', 'owners', 'owners/o1', 'owners/o1/versions', 'owners/o1/versions/v1']) {
        assert.ok(synced.has(path.join(root, dir)), `${path.join(root, dir)} was fsynced (fsynced: ${[...synced].join(', ')})`);
      }
    });
  }
});

describe('a put whose last directory fsync fails', { timeout: 120_000 }, () => {
  for (const [label, threads, body] of WRITE_PATHS) {
    it(`fails, and leaves the renamed meta file's data in place, ${label}`, async () => {
      const root = rootFor('failed', label);
      const key = 'owners/o1/versions/v1/source.tar.gz';
      const objectDir = path.join(root, 'owners/o1/versions/v1');
      // -P: only calls on the object's own directory, whose one fsync comes after the rename.
      const traced = run('strace', ['-f', '-qq', '-e', 'trace=fsync', '-P', objectDir, '-e', 'inject=fsync:error=EIO', process.execPath, '--import', TSX, PUT_ONCE, root, key, threads, body]);
      await assert.rejects(traced, (error: { stderr?: string }) => /INJECTED/.test(error.stderr ?? '') && /EIO/.test(error.stderr ?? ''));
      const store = new FsObjectStore({ root, writerThreads: 0 });
      const { body: stored } = await store.get(key);
      const chunks: Buffer[] = [];
      for await (const chunk of stored) chunks.push(chunk as Buffer);
      assert.equal(Buffer.concat(chunks).toString(), 'durable bytes', 'the meta file is there and so is the data it names');
    });
  }
});
