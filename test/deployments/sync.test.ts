import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { rollbackTarget } from '../../src/cli/commands/rollback.ts';
import type { Deployment } from '../../src/cli/commands/deployments.ts';
import { EdgeApiError } from '../../src/edge/client.ts';
import { SyncLockedError } from '../../src/edge/files.ts';
import { IndexMismatchError } from '../../src/edge/index-file.ts';
import { fileNameFor, isArtifactFileName } from '../../src/edge/naming.ts';
import { EdgeSync, runSync, SyncIncompleteError, type RunOptions, type SyncEvent, type SyncReport } from '../../src/edge/sync.ts';
import { filterModule, sha256, startHarness, type Harness, type Json } from './helpers.ts';
import { freePort, startProxy, type TamperingProxy } from './proxy.ts';

const fastBackoff = { initialMs: 20, maxMs: 100 };

describe('kiln edge sync', () => {
  let h: Harness;
  let proxy: TamperingProxy;
  const dirs: string[] = [];

  before(async () => {
    h = await startHarness();
    proxy = await startProxy(h.t.url);
  });
  after(async () => {
    await proxy.close();
    await h.close();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'kiln-edge-'));
    dirs.push(dir);
    return path.join(dir, 'production');
  }

  /** An owner of its own with an edge token scoped to it: each test sees only its own applications. */
  async function tenant() {
    const name = `t-${randomUUID().slice(0, 8)}`;
    const owner = await h.newOwner(name);
    const edge = await h.edgeToken([owner.id]);
    const createApp = (appName: string) => h.createApp(appName, owner.token);
    const version = (appId: string, semver: string, module: Buffer) => h.succeededVersion(appId, semver, module, { token: owner.token });
    const promote = (appId: string, versionId: string) => h.promote(appId, versionId, 'production', owner.token);
    const sync = (dir: string, options: Partial<RunOptions> = {}) =>
      runSync({ url: proxy.url, token: edge, environment: 'production', dir, backoff: fastBackoff, retries: 0, ...options });
    return { name, owner, edge, createApp, version, promote, sync };
  }

  const readIndex = async (dir: string): Promise<Json> => JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as Json;
  const leftovers = async (dir: string) => (await readdir(dir)).filter((name) => name.startsWith('.kiln-'));
  const artifactRequests = () => proxy.log.filter((entry) => entry.path.startsWith('/v1/edge/artifacts/')).length;

  it('promote → manifest → sync: the directory holds the right bytes, and an unchanged manifest is a 304', async () => {
    const t = await tenant();
    const app = await t.createApp('hello');
    const module = filterModule('hello-1');
    const v1 = await t.version(app.id, '1.0.0', module);
    await t.promote(app.id, v1.version.id);
    const dir = await tempDir();

    const report = (await t.sync(dir)) as SyncReport;
    const file = `${t.name}.hello.wasm`;
    assert.deepEqual(report.written, [file]);
    assert.equal(report.complete, true);
    assert.deepEqual(await readFile(path.join(dir, file)), module);
    assert.equal((await stat(path.join(dir, file))).mode & 0o777, 0o644);
    const index = await readIndex(dir);
    assert.equal(index.format, 'kiln-edge-index/1');
    assert.equal(index.environment, 'production');
    assert.match(index.etag, /^"[0-9a-f]{64}"$/);
    assert.deepEqual(
      index.applications.map((entry: Json) => [entry.file, entry.application, entry.version, entry.sha256, entry.kind, entry.config]),
      [[file, 'hello', '1.0.0', sha256(module), 'proxy-wasm', '{"v":"1.0.0"}']],
    );
    assert.deepEqual(await leftovers(dir), [], 'no temp file or lock left behind');

    const requestsBefore = proxy.log.length;
    const downloadsBefore = artifactRequests();
    const again = (await t.sync(dir)) as SyncReport;
    assert.equal(again.unchanged, true);
    assert.deepEqual(proxy.log.slice(requestsBefore).map((entry) => entry.status), [304], 'a fresh run trusts the index and gets a 304');
    assert.equal(artifactRequests(), downloadsBefore);
    assert.deepEqual((await readIndex(dir)).etag, index.etag);
  });

  it('replaces a file atomically when a newer version is promoted', async () => {
    const t = await tenant();
    const app = await t.createApp('swap');
    const old = filterModule('swap-1');
    const next = filterModule('swap-2-'.padEnd(64, 'x'));
    const v1 = await t.version(app.id, '1.0.0', old);
    await t.promote(app.id, v1.version.id);
    const dir = await tempDir();
    await t.sync(dir);
    const file = path.join(dir, `${t.name}.swap.wasm`);
    const inodeBefore = (await stat(file)).ino;

    const v2 = await t.version(app.id, '2.0.0', next);
    await t.promote(app.id, v2.version.id);
    // A reader (the edge server) polling the file during the sync only ever sees one whole version.
    let reading = true;
    const seen = new Set<string>();
    const reader = (async () => {
      while (reading) {
        seen.add(sha256(await readFile(file)));
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const report = (await t.sync(dir)) as SyncReport;
    reading = false;
    await reader;
    assert.deepEqual(report.written, [`${t.name}.swap.wasm`]);
    assert.deepEqual(await readFile(file), next);
    assert.notEqual((await stat(file)).ino, inodeBefore, 'a new file renamed over the old one, not rewritten in place');
    for (const hash of seen) assert.ok(hash === sha256(old) || hash === sha256(next), 'never a partial file');
    assert.equal((await readIndex(dir)).applications[0].sha256, sha256(next));
    assert.deepEqual(await leftovers(dir), []);
  });

  it('rolls back: the earlier bytes return, and the reload command runs after each change only', async () => {
    const t = await tenant();
    const app = await t.createApp('roll');
    const v1Module = filterModule('roll-1');
    const v1 = await t.version(app.id, '1.0.0', v1Module);
    await t.promote(app.id, v1.version.id);
    const v2 = await t.version(app.id, '2.0.0', filterModule('roll-2'));
    await t.promote(app.id, v2.version.id);
    const dir = await tempDir();
    const marker = path.join(path.dirname(dir), 'reloads.txt');
    const reload = `printf '%s|%s|%s\\n' "$KILN_EDGE_ENVIRONMENT" "$KILN_EDGE_CHANGED" "$(basename "$KILN_EDGE_DIR")" >> ${JSON.stringify(marker)}`;
    const events: SyncEvent[] = [];
    await t.sync(dir, { reload, onEvent: (event) => events.push(event) });
    assert.ok(events.some((event) => event.type === 'reloaded'));

    const history = (await h.as(t.owner.token, 'GET', `/v1/applications/${app.id}/deployments?environment=production`)).body;
    const target = rollbackTarget(history.items as Deployment[], history.active.production as Deployment);
    assert.equal(target?.version, '1.0.0');
    await h.as(t.owner.token, 'POST', `/v1/applications/${app.id}/deployments`, { json: { versionId: target?.versionId, environment: 'production', buildId: target?.buildId, variant: target?.variant } });
    await t.sync(dir, { reload });
    assert.deepEqual(await readFile(path.join(dir, `${t.name}.roll.wasm`)), v1Module);
    await t.sync(dir, { reload });
    const lines = (await readFile(marker, 'utf8')).trim().split('\n');
    assert.deepEqual(lines, [`production|${t.name}.roll.wasm|production`, `production|${t.name}.roll.wasm|production`], 'two changes, two reloads; the unchanged sync did not reload');
  });

  it('rejects a corrupted download and keeps the old file', async () => {
    const t = await tenant();
    const app = await t.createApp('guarded');
    const good = filterModule('guarded-1');
    const v1 = await t.version(app.id, '1.0.0', good);
    await t.promote(app.id, v1.version.id);
    const dir = await tempDir();
    await t.sync(dir);
    const file = path.join(dir, `${t.name}.guarded.wasm`);
    const indexBefore = await readIndex(dir);

    const newer = filterModule('guarded-2');
    const v2 = await t.version(app.id, '2.0.0', newer);
    await t.promote(app.id, v2.version.id);
    proxy.tamper = true;
    const events: SyncEvent[] = [];
    try {
      await assert.rejects(t.sync(dir, { retries: 2, onEvent: (event) => events.push(event) }), (error: unknown) => {
        assert.ok(error instanceof SyncIncompleteError);
        assert.match(error.message, /corrupt: sha256/);
        return true;
      });
    } finally {
      proxy.tamper = false;
    }
    assert.equal(events.filter((event) => event.type === 'retrying').length, 2, 'retried with backoff before giving up');
    assert.deepEqual(await readFile(file), good, 'the old file is untouched');
    const indexAfter = await readIndex(dir);
    assert.equal(indexAfter.applications[0].sha256, sha256(good), 'the index still describes the old file');
    assert.equal(indexAfter.etag, null, 'a partial sync records no ETag, so the next poll is not a 304');
    assert.equal(indexBefore.applications[0].sha256, sha256(good));
    assert.deepEqual(await leftovers(dir), [], 'the rejected temp file was removed');

    const healed = (await t.sync(dir)) as SyncReport;
    assert.deepEqual(healed.written, [`${t.name}.guarded.wasm`]);
    assert.deepEqual(await readFile(file), newer);
  });

  it('removes withdrawn applications and never touches other files', async () => {
    const t = await tenant();
    const keep = await t.createApp('keep');
    const gone = await t.createApp('gone');
    const keepVersion = await t.version(keep.id, '1.0.0', filterModule('keep'));
    const goneVersion = await t.version(gone.id, '1.0.0', filterModule('gone'));
    await t.promote(keep.id, keepVersion.version.id);
    await t.promote(gone.id, goneVersion.version.id);
    const dir = await tempDir();
    await t.sync(dir);
    const victim = path.join(path.dirname(dir), 'victim.wasm');
    await writeFile(victim, 'outside the directory');
    await writeFile(path.join(dir, 'README.txt'), 'operator notes');
    await writeFile(path.join(dir, 'someone.else.wasm'), 'not listed in the index');
    // A tampered index must not steer a removal outside the directory.
    const index = await readIndex(dir);
    index.applications.push({ ...index.applications[0], file: '../victim.wasm', applicationId: randomUUID() });
    await writeFile(path.join(dir, 'index.json'), JSON.stringify(index));

    assert.equal((await h.as(t.owner.token, 'DELETE', `/v1/versions/${goneVersion.version.id}?force=true`)).status, 204);
    const report = (await t.sync(dir)) as SyncReport;
    assert.deepEqual(report.removed, [`${t.name}.gone.wasm`]);
    assert.deepEqual((await readdir(dir)).sort(), ['README.txt', 'index.json', `${t.name}.keep.wasm`, 'someone.else.wasm'].sort());
    assert.equal(await readFile(victim, 'utf8'), 'outside the directory');
    assert.deepEqual((await readIndex(dir)).applications.map((entry: Json) => entry.file), [`${t.name}.keep.wasm`]);
  });

  it('retries with backoff while the API is unreachable, and stops at once on a refused token', async () => {
    const t = await tenant();
    const app = await t.createApp('patient');
    const module = filterModule('patient');
    const version = await t.version(app.id, '1.0.0', module);
    await t.promote(app.id, version.version.id);
    const dir = await tempDir();
    const port = await freePort();
    const events: SyncEvent[] = [];
    const syncing = runSync({ url: `http://127.0.0.1:${port}`, token: t.edge, environment: 'production', dir, backoff: { initialMs: 100, maxMs: 200 }, retries: 30, onEvent: (event) => events.push(event) });
    const retrying = () => events.filter((event): event is Extract<SyncEvent, { type: 'retrying' }> => event.type === 'retrying');
    // The API comes up after two retries were announced, however long the (loaded) host took for them.
    while (retrying().length < 2) await new Promise((resolve) => setTimeout(resolve, 20));
    const late = await startProxy(h.t.url, port);
    try {
      const report = (await syncing) as SyncReport;
      assert.equal(report.complete, true);
    } finally {
      await late.close();
    }
    const retries = retrying();
    assert.deepEqual(
      retries.map((event) => event.attempt),
      retries.map((_, index) => index + 1),
      'each failure is counted once',
    );
    assert.ok(retries.every((event) => event.delayMs > 0 && event.delayMs <= 200), `backoff within its 200 ms maximum: ${retries.map((event) => event.delayMs).join(', ')}`);
    assert.match(retries[0]?.error ?? '', /cannot reach Kiln/);
    assert.deepEqual(await readFile(path.join(dir, `${t.name}.patient.wasm`)), module);

    const refused: SyncEvent[] = [];
    await assert.rejects(t.sync(dir, { token: 'kiln_edg_unknown', retries: 5, onEvent: (event) => refused.push(event) }), (error: unknown) => error instanceof EdgeApiError && error.status === 401);
    await assert.rejects(t.sync(dir, { token: h.t.ownerToken, retries: 5 }), /403[\s\S]*edge token/);
    assert.equal(refused.filter((event) => event.type === 'retrying').length, 0, 'a refused token is not retried');
    assert.deepEqual(await readFile(path.join(dir, `${t.name}.patient.wasm`)), module, 'failures delete nothing');
  });

  it('leaves the directory consistent after an interruption, and the next run repairs it', async () => {
    const t = await tenant();
    const app = await t.createApp('crashy');
    const v1 = await t.version(app.id, '1.0.0', filterModule('crashy-1'));
    await t.promote(app.id, v1.version.id);
    const dir = await tempDir();
    await t.sync(dir);
    const file = path.join(dir, `${t.name}.crashy.wasm`);

    // What a sync killed after its rename but before its index write leaves:
    // the new file in place, the old index, a temp file and a stale lock.
    const v2Module = filterModule('crashy-2');
    const v2 = await t.version(app.id, '2.0.0', v2Module);
    await t.promote(app.id, v2.version.id);
    await writeFile(file, v2Module);
    await writeFile(path.join(dir, '.kiln-tmp-0123456789abcdef'), 'half a download');
    const dead = spawnSync('true').pid;
    await writeFile(path.join(dir, '.kiln-sync.lock'), `${dead} feedface`);
    const downloads = artifactRequests();
    const report = (await t.sync(dir)) as SyncReport;
    assert.deepEqual(report.written, [], 'the file already had the right bytes: checked by hash, not downloaded again');
    assert.equal(artifactRequests(), downloads);
    assert.equal((await readIndex(dir)).applications[0].sha256, sha256(v2Module));
    assert.deepEqual(await leftovers(dir), []);

    // A file changed behind the sync's back (size or mtime differs) is checked and repaired.
    await writeFile(file, 'garbage');
    const repaired = (await t.sync(dir)) as SyncReport;
    assert.deepEqual(repaired.written, [`${t.name}.crashy.wasm`]);
    assert.deepEqual(await readFile(file), v2Module);
  });

  it('with --watch, picks up promotions as they happen, retries a failed reload, and stops when asked', async () => {
    const t = await tenant();
    const app = await t.createApp('live');
    const v1 = await t.version(app.id, '1.0.0', filterModule('live-1'));
    await t.promote(app.id, v1.version.id);
    const dir = await tempDir();
    const file = path.join(dir, `${t.name}.live.wasm`);
    const flag = path.join(path.dirname(dir), 'reload-may-succeed');
    const controller = new AbortController();
    const events: SyncEvent[] = [];
    const watching = t.sync(dir, {
      watch: true,
      intervalMs: 50,
      signal: controller.signal,
      // Fails until the flag file exists: the sync must keep the reload pending and try again.
      reload: `test -e ${JSON.stringify(flag)}`,
      onEvent: (event) => events.push(event),
    });
    const until = async (what: string, check: () => Promise<boolean> | boolean) => {
      for (let waited = 0; !(await check()); waited += 50) {
        if (waited > 20_000) assert.fail(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    await until('the first file', async () => (await stat(file).catch(() => undefined)) !== undefined);
    await until('a failed reload to be retried', () => events.filter((event) => event.type === 'retrying' && /reload command/.test(event.error)).length >= 2);
    await writeFile(flag, '');
    await until('the reload to succeed', () => events.some((event) => event.type === 'reloaded'));
    const v2Module = filterModule('live-2');
    const v2 = await t.version(app.id, '2.0.0', v2Module);
    await t.promote(app.id, v2.version.id);
    await until('the new version', async () => sha256(await readFile(file)) === sha256(v2Module));
    controller.abort();
    const last = (await watching) as SyncReport;
    assert.ok(last, 'returns the last report when stopped');
    assert.ok(events.filter((event) => event.type === 'synced' && event.report.unchanged).length > 0, 'unchanged polls in between were 304s');
    assert.deepEqual(await leftovers(dir), [], 'the lock is released');
  });

  it('allows one sync per directory and refuses a directory of another environment', async () => {
    const t = await tenant();
    const dir = await tempDir();
    const first = await EdgeSync.open({ url: proxy.url, token: t.edge, environment: 'production', dir });
    try {
      await assert.rejects(EdgeSync.open({ url: proxy.url, token: t.edge, environment: 'production', dir }), SyncLockedError);
      await first.syncOnce();
    } finally {
      await first.close();
    }
    await assert.rejects(runSync({ url: proxy.url, token: t.edge, environment: 'staging', dir }), IndexMismatchError);
  });

  it('names files <owner>.<application>.wasm and refuses names that could be paths', () => {
    assert.equal(fileNameFor('local', 'hello'), 'local.hello.wasm');
    assert.equal(fileNameFor('a.b', 'c'), 'a.b.c.wasm');
    assert.notEqual(fileNameFor('a.b', 'c'), fileNameFor('a', 'b-c'));
    for (const [owner, app] of [['..', 'x'], ['a', '../x'], ['a/b', 'c'], ['a', 'b.c'], ['', 'x'], ['A', 'x'], ['a', 'x'.repeat(101)]] as const) {
      assert.equal(fileNameFor(owner, app), undefined, `${owner} ${app}`);
    }
    assert.equal(isArtifactFileName('local.hello.wasm'), true);
    for (const name of ['../victim.wasm', 'index.json', '.kiln-tmp-1', 'a/b.c.wasm', 'nodot.wasm']) assert.equal(isArtifactFileName(name), false, name);
  });
});
