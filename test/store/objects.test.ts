/**
 * One contract, two backends: every ObjectStore behaviour the rest of Kiln
 * relies on is checked against the filesystem store and against a real S3
 * server (radosgw from scripts/services/start-ceph.sh, configured through
 * the S3_* variables it prints).
 */
import assert from 'node:assert/strict';
import { s3Skip, s3TestSettings } from '../support/backends.ts';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { DeleteBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  createObjectStore,
  ObjectIntegrityError,
  ObjectNotFoundError,
  S3ObjectStore,
} from '../../src/store/objects/index.ts';
import type { ObjectInfo, ObjectStore, S3ObjectStoreConfig } from '../../src/store/objects/index.ts';

interface Fixture {
  store: ObjectStore;
  /** Every key the test writes starts with this, so runs sharing a bucket do not meet. */
  prefix: string;
  /** Changes the stored bytes (same length) without going through the store. */
  tamper(key: string): Promise<void>;
  cleanup(): Promise<void>;
}

const MiB = 1024 * 1024;
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** A body of `size` random bytes produced in chunks, hashed as it is produced. */
function generatedBody(size: number): { stream: Readable; digest: () => string } {
  const hash = createHash('sha256');
  let remaining = size;
  const stream = new Readable({
    read() {
      if (remaining === 0) return void this.push(null);
      const chunk = randomBytes(Math.min(remaining, 256 * 1024));
      remaining -= chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, digest: () => hash.digest('hex') };
}

/** Emits `size` bytes, then fails like a client that disconnects mid-upload. */
function failingBody(size: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return void this.destroy(new Error('client went away'));
      const chunk = randomBytes(Math.min(size - sent, 256 * 1024));
      sent += chunk.length;
      this.push(chunk);
    },
  });
}

async function hashStream(stream: Readable): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

async function listAll(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of store.list(prefix)) out.push(info);
  return out;
}

function objectContract(name: string, setup: () => Promise<Fixture>): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let f: Fixture;
    let store: ObjectStore;
    let p: string;
    before(async () => {
      f = await setup();
      store = f.store;
      p = f.prefix;
    });
    after(async () => f?.cleanup());

    it('answers ping', async () => {
      await store.ping();
    });

    it('round-trips a small buffer with its size and sha256', async () => {
      const data = Buffer.from('hello, kiln');
      const info = await store.put(`${p}small/hello.txt`, data, { contentType: 'text/plain' });
      assert.deepEqual(info, { key: `${p}small/hello.txt`, size: data.length, sha256: sha256(data) });
      const got = await store.getBuffer(`${p}small/hello.txt`);
      assert.deepEqual(got.info, info);
      assert.deepEqual(got.body, data);
      assert.deepEqual(await store.head(`${p}small/hello.txt`), info);
    });

    it('round-trips an empty object', async () => {
      const info = await store.put(`${p}small/empty`, Buffer.alloc(0));
      assert.equal(info.size, 0);
      assert.equal(info.sha256, sha256(Buffer.alloc(0)));
      assert.equal((await store.getBuffer(`${p}small/empty`)).body.length, 0);
    });

    it('streams a 20 MB body in and out', async () => {
      const size = 20 * MiB;
      const body = generatedBody(size);
      const info = await store.put(`${p}large/blob.bin`, body.stream);
      assert.equal(info.size, size);
      assert.equal(info.sha256, body.digest());
      const got = await store.get(`${p}large/blob.bin`);
      assert.deepEqual(got.info, info);
      assert.deepEqual(await hashStream(got.body), { sha256: info.sha256, size });
      assert.deepEqual(await store.head(`${p}large/blob.bin`), info);
    });

    it('replaces an object on a second put', async () => {
      await store.put(`${p}replace/x`, Buffer.from('first'));
      const info = await store.put(`${p}replace/x`, Buffer.from('second, longer'));
      const got = await store.getBuffer(`${p}replace/x`);
      assert.equal(got.body.toString(), 'second, longer');
      assert.deepEqual(got.info, info);
    });

    it('keeps one intact version when puts to a key race', async () => {
      const key = `${p}race/x`;
      const bodies = Array.from({ length: 8 }, (_, i) => Buffer.from(`version ${i} `.repeat(1000 + i)));
      await Promise.all(bodies.map((body) => store.put(key, body)));
      const got = await store.getBuffer(key);
      assert.ok(bodies.some((body) => body.equals(got.body)));
      assert.equal(got.info.sha256, sha256(got.body));
      assert.deepEqual(
        (await listAll(store, `${p}race/`)).map((i) => i.key),
        [key],
      );
    });

    it('accepts a matching expectedSha256, in any case', async () => {
      const data = Buffer.from('expected');
      const info = await store.put(`${p}expected/ok`, data, { expectedSha256: sha256(data).toUpperCase() });
      assert.equal(info.sha256, sha256(data));
    });

    it('stores nothing when expectedSha256 does not match (small body)', async () => {
      const wrong = sha256(Buffer.from('something else'));
      await assert.rejects(store.put(`${p}expected/bad`, Buffer.from('actual'), { expectedSha256: wrong }), ObjectIntegrityError);
      assert.equal(await store.head(`${p}expected/bad`), undefined);
    });

    it('stores nothing and keeps the old object when expectedSha256 does not match (streamed body)', async () => {
      const key = `${p}expected/big`;
      const old = await store.put(key, Buffer.from('old content'));
      const wrong = sha256(Buffer.from('something else'));
      await assert.rejects(store.put(key, generatedBody(7 * MiB).stream, { expectedSha256: wrong }), ObjectIntegrityError);
      assert.deepEqual(await store.head(key), old);
      assert.equal((await store.getBuffer(key)).body.toString(), 'old content');
      assert.deepEqual(
        (await listAll(store, `${p}expected/`)).map((i) => i.key),
        [`${p}expected/big`, `${p}expected/ok`],
      );
    });

    it('rejects a malformed expectedSha256', async () => {
      await assert.rejects(store.put(`${p}expected/malformed`, Buffer.from('x'), { expectedSha256: 'abc' }), /not a hex sha256/);
    });

    it('stores nothing when the body fails midway', async () => {
      await assert.rejects(store.put(`${p}broken/small`, failingBody(1000)), /client went away/);
      await assert.rejects(store.put(`${p}broken/large`, failingBody(8 * MiB)), /client went away/);
      assert.equal(await store.head(`${p}broken/small`), undefined);
      assert.equal(await store.head(`${p}broken/large`), undefined);
      assert.deepEqual(await listAll(store, `${p}broken/`), []);
    });

    it('reports a missing object', async () => {
      assert.equal(await store.head(`${p}missing/x`), undefined);
      await assert.rejects(store.get(`${p}missing/x`), ObjectNotFoundError);
      await assert.rejects(store.getBuffer(`${p}missing/x`), (error: unknown) => {
        assert.ok(error instanceof ObjectNotFoundError);
        assert.equal(error.key, `${p}missing/x`);
        return true;
      });
    });

    it('deletes, and deleting again (or a missing key) succeeds', async () => {
      await store.put(`${p}del/x`, Buffer.from('bye'));
      await store.delete(`${p}del/x`);
      assert.equal(await store.head(`${p}del/x`), undefined);
      await assert.rejects(store.get(`${p}del/x`), ObjectNotFoundError);
      await store.delete(`${p}del/x`);
      await store.delete(`${p}del/never-existed/y`);
    });

    it('lists by prefix in lexical order, with sizes and hashes', async () => {
      const keys = ['a', 'a-b', 'a/b', 'a/c/d', 'ab', 'b/x'].map((k) => `${p}list/${k}`);
      // Written out of order on purpose.
      for (const key of [...keys].reverse()) await store.put(key, Buffer.from(`content of ${key}`));
      const all = await listAll(store, `${p}list/`);
      assert.deepEqual(
        all.map((i) => i.key),
        keys,
      );
      for (const info of all) {
        const content = Buffer.from(`content of ${info.key}`);
        assert.deepEqual(info, { key: info.key, size: content.length, sha256: sha256(content) });
      }
      const keysOf = async (prefix: string): Promise<string[]> => (await listAll(store, `${p}list/${prefix}`)).map((i) => i.key.slice(`${p}list/`.length));
      assert.deepEqual(await keysOf('a'), ['a', 'a-b', 'a/b', 'a/c/d', 'ab']);
      assert.deepEqual(await keysOf('a/'), ['a/b', 'a/c/d']);
      assert.deepEqual(await keysOf('a/c'), ['a/c/d']);
      assert.deepEqual(await keysOf('b'), ['b/x']);
      assert.deepEqual(await keysOf('zzz'), []);
      assert.deepEqual(await keysOf('nothing/here/'), []);
    });

    it('deletes by prefix, leaving other keys alone', async () => {
      const keys = ['v1/src.tar.gz', 'v1/out/app.wasm', 'v1/out/app.opt.wasm', 'v10/src.tar.gz', 'v2/src.tar.gz'];
      for (const key of keys) await store.put(`${p}dp/${key}`, Buffer.from(key));
      await store.deletePrefix(`${p}dp/v1/`);
      assert.deepEqual(
        (await listAll(store, `${p}dp/`)).map((i) => i.key),
        [`${p}dp/v10/src.tar.gz`, `${p}dp/v2/src.tar.gz`],
      );
      await store.deletePrefix(`${p}dp/v1`);
      assert.deepEqual(
        (await listAll(store, `${p}dp/`)).map((i) => i.key),
        [`${p}dp/v2/src.tar.gz`],
      );
      await store.deletePrefix(`${p}dp/nothing/`);
      await store.put(`${p}dp/v1/src.tar.gz`, Buffer.from('again'));
      assert.equal((await store.getBuffer(`${p}dp/v1/src.tar.gz`)).body.toString(), 'again');
    });

    it('rejects invalid keys and prefixes', async () => {
      for (const key of ['../x', '/abs', 'a//b', '', 'a/../b', 'a/./b', 'a/b/', '.', 'a\\b', 'sp ace', 'é', 'x'.repeat(513)]) {
        const invalid = /invalid object key/;
        await assert.rejects(store.put(key, Buffer.from('x')), invalid, `put ${JSON.stringify(key)}`);
        await assert.rejects(store.get(key), invalid, `get ${JSON.stringify(key)}`);
        await assert.rejects(store.head(key), invalid, `head ${JSON.stringify(key)}`);
        await assert.rejects(store.delete(key), invalid, `delete ${JSON.stringify(key)}`);
      }
      for (const prefix of ['../', '/abs', 'a//', 'a/../', 'sp ace']) {
        await assert.rejects(store.deletePrefix(prefix), /invalid object key prefix/);
        await assert.rejects(listAll(store, prefix), /invalid object key prefix/);
      }
    });

    it('detects content changed behind its back', async () => {
      const key = `${p}tamper/app.wasm`;
      await store.put(key, Buffer.from('the genuine artifact bytes'));
      await f.tamper(key);
      await assert.rejects(store.getBuffer(key), (error: unknown) => {
        assert.ok(error instanceof ObjectIntegrityError, String(error));
        assert.equal(error.key, key);
        assert.equal(error.expected, sha256(Buffer.from('the genuine artifact bytes')));
        return true;
      });
      const { body } = await store.get(key);
      await assert.rejects(hashStream(body), ObjectIntegrityError);
    });

    it('detects a large object changed behind its back', async () => {
      const key = `${p}tamper/large.bin`;
      await store.put(key, generatedBody(6 * MiB).stream);
      await f.tamper(key);
      const { body } = await store.get(key);
      await assert.rejects(hashStream(body), ObjectIntegrityError);
    });
  });
}

// ---- filesystem -----------------------------------------------------------

async function fsFixture(options: { writerThreads?: number } = {}): Promise<Fixture & { root: string }> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'kiln-objects-'));
  return {
    root,
    store: createObjectStore({ kind: 'fs', root, ...options }),
    prefix: '',
    async tamper(key) {
      // Knows the layout: <dir>/<name>~meta names the data file beside it.
      const dir = path.join(root, path.dirname(key));
      const meta = JSON.parse(await readFile(path.join(dir, `${path.basename(key)}~meta`), 'utf8')) as { data: string };
      const file = path.join(dir, meta.data);
      const bytes = await readFile(file);
      bytes[0] = (bytes[0] ?? 0) ^ 0xff;
      await writeFile(file, bytes);
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}

objectContract('filesystem', fsFixture);
// Small buffers go to writer threads by default; the same contract on the event loop's own path.
objectContract('filesystem without writer threads', () => fsFixture({ writerThreads: 0 }));

describe('FsObjectStore', () => {
  it('leaves no temporary or orphaned files behind', async () => {
    const f = await fsFixture();
    try {
      await f.store.put('d/x', Buffer.from('one'));
      await f.store.put('d/x', Buffer.from('two'));
      await assert.rejects(f.store.put('d/y', Buffer.from('y'), { expectedSha256: sha256(Buffer.from('z')) }));
      const files = (await readdir(path.join(f.root, 'd'))).sort();
      assert.equal(files.length, 2, files.join(', '));
      assert.equal(files[1], 'x~meta');
      assert.match(files[0] ?? '', /^x~data-/);
      await f.store.deletePrefix('d/');
      assert.deepEqual(await readdir(f.root), []);
    } finally {
      await f.cleanup();
    }
  });

  it('lays out the same files whether a writer thread or the event loop wrote them', async () => {
    const threaded = await fsFixture();
    const direct = await fsFixture({ writerThreads: 0 });
    try {
      const layout = async (f: Awaited<ReturnType<typeof fsFixture>>): Promise<{ files: string[]; meta: Record<string, unknown> }> => {
        await f.store.put('v/source.tar.gz', Buffer.from('first'), { contentType: 'application/octet-stream' });
        await f.store.put('v/source.tar.gz', Buffer.from('second'), { contentType: 'application/octet-stream' });
        const files = (await readdir(path.join(f.root, 'v'))).sort();
        const meta = JSON.parse(await readFile(path.join(f.root, 'v', 'source.tar.gz~meta'), 'utf8')) as Record<string, unknown>;
        return { files: files.map((file) => file.replace(/~data-.*/, '~data-<uuid>')), meta: { ...meta, data: String(meta.data).replace(/~data-.*/, '~data-<uuid>') } };
      };
      const fromThread = await layout(threaded);
      assert.deepEqual(fromThread, await layout(direct));
      assert.deepEqual(fromThread.files, ['source.tar.gz~data-<uuid>', 'source.tar.gz~meta'], 'the replaced bytes are removed');
      assert.equal(fromThread.meta.sha256, sha256(Buffer.from('second')));
    } finally {
      await threaded.cleanup();
      await direct.cleanup();
    }
  });

  it("reports a writer thread's filesystem error with its code and leaves nothing behind", async () => {
    const f = await fsFixture();
    try {
      // A file where the key's directory should be: mkdir fails in the thread.
      await writeFile(path.join(f.root, 'blocked'), 'not a directory');
      await assert.rejects(f.store.put('blocked/x', Buffer.from('x')), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.match(String((error as NodeJS.ErrnoException).code), /^(EEXIST|ENOTDIR)$/);
        return true;
      });
      assert.deepEqual(await readdir(f.root), ['blocked']);
    } finally {
      await f.cleanup();
    }
  });

  it('answers concurrent puts to many new keys, each readable afterwards', async () => {
    const f = await fsFixture();
    try {
      const bodies = Array.from({ length: 40 }, (_, i) => Buffer.from(`upload ${i} `.repeat(50 + i)));
      const infos = await Promise.all(bodies.map((body, i) => f.store.put(`many/${i}/source.tar.gz`, body)));
      for (const [i, body] of bodies.entries()) {
        assert.equal(infos[i]?.sha256, sha256(body));
        assert.deepEqual((await f.store.getBuffer(`many/${i}/source.tar.gz`)).body, body);
      }
    } finally {
      await f.cleanup();
    }
  });
});

// ---- S3 -------------------------------------------------------------------

// npm test starts radosgw and exports KILN_TEST_S3_*; s3Skip() fails in CI when it is missing.
const s3SkipReason = s3Skip();
const s3Config: S3ObjectStoreConfig | undefined = s3SkipReason ? undefined : { ...s3TestSettings(), forcePathStyle: true };

function rawClient(config: S3ObjectStoreConfig): S3Client {
  return new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    credentials: { accessKeyId: config.accessKeyId ?? '', secretAccessKey: config.secretAccessKey ?? '' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

async function s3Fixture(config: S3ObjectStoreConfig): Promise<Fixture> {
  const store = createObjectStore({ kind: 's3', ...config });
  const raw = rawClient(config);
  const prefix = `test-${randomUUID()}/`;
  return {
    store,
    prefix,
    async tamper(key) {
      // Rewrites the object with other bytes of the same length but keeps
      // the recorded sha256, as a bit flip on the server would.
      const head = await raw.send(new HeadObjectCommand({ Bucket: config.bucket, Key: key }));
      const forged = Buffer.alloc(head.ContentLength ?? 0, 0x42);
      await raw.send(new PutObjectCommand({ Bucket: config.bucket, Key: key, Body: forged, Metadata: head.Metadata }));
    },
    async cleanup() {
      await store.deletePrefix(prefix);
      raw.destroy();
    },
  };
}

if (s3Config) {
  objectContract('S3', () => s3Fixture(s3Config));

  describe('S3ObjectStore against the server', () => {
    it('creates its bucket when missing', async () => {
      const bucket = `kiln-test-${randomUUID().slice(0, 8)}`;
      const store = new S3ObjectStore({ ...s3Config, bucket });
      const raw = rawClient(s3Config);
      try {
        await store.ping();
        await store.put('x', Buffer.from('in a new bucket'));
        assert.equal((await store.getBuffer('x')).body.toString(), 'in a new bucket');
      } finally {
        await store.deletePrefix('');
        await raw.send(new DeleteBucketCommand({ Bucket: bucket }));
        raw.destroy();
      }
    });

    it('fails with a clear message on wrong credentials', async () => {
      const store = new S3ObjectStore({ ...s3Config, secretAccessKey: 'wrong-secret', maxAttempts: 1 });
      await assert.rejects(store.ping(), /access denied: wrong access key or secret.*HTTP 403/);
      await assert.rejects(listAll(store, 'x'), /S3 ping in bucket .* failed: access denied/);
      await assert.rejects(store.put('x', Buffer.from('x')), /S3 ping in bucket .* failed/);
    });
  });
} else {
  describe('ObjectStore contract: S3', { skip: s3SkipReason }, () => {
    it('is skipped', () => {});
  });
}

// Runs everywhere: needs no server, only a port nobody answers properly on.
describe('S3ObjectStore when the server is unusable', () => {
  it('fails fast with the endpoint in the message when nothing listens', async () => {
    const port = await closedPort();
    const store = new S3ObjectStore({ ...unusableConfig(port), maxAttempts: 1 });
    await assert.rejects(store.ping(), (error: unknown) => {
      assert.match(String(error), new RegExp(`S3 ping in bucket kiln-test at http://127.0.0.1:${port} failed`));
      return true;
    });
  });

  // "Fast" is the mechanism, not a duration: a failing connection is tried
  // exactly maxAttempts times, with no retry loop of its own behind it.
  it('tries a connection the server drops exactly maxAttempts times, then fails', async () => {
    let connections = 0;
    const dropping = net.createServer((socket) => {
      connections++;
      socket.resetAndDestroy();
    });
    await new Promise<void>((resolve) => dropping.listen(0, '127.0.0.1', resolve));
    const port = (dropping.address() as net.AddressInfo).port;
    try {
      for (const maxAttempts of [1, 2]) {
        connections = 0;
        const store = new S3ObjectStore({ ...unusableConfig(port), maxAttempts });
        await assert.rejects(store.ping(), /S3 ping in bucket kiln-test at .* failed/);
        assert.equal(connections, maxAttempts);
      }
    } finally {
      await new Promise((resolve) => dropping.close(resolve));
    }
  });

  it('does not hang when the server accepts connections but never answers', async () => {
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const store = new S3ObjectStore({ ...unusableConfig(port), requestTimeoutMs: 300, maxAttempts: 2 });
      await assert.rejects(store.put('x', Buffer.from('x')), /S3 ping in bucket kiln-test at .* failed/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

function unusableConfig(port: number): S3ObjectStoreConfig {
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket: 'kiln-test',
    region: 'us-east-1',
    accessKeyId: 'x',
    secretAccessKey: 'y',
    forcePathStyle: true,
    connectTimeoutMs: 1000,
  };
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
