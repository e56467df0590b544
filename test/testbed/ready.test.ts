/**
 * A successful build is made ready on the test bed before it is recorded
 * succeeded (decision 0040, issue 16: the first request after an upload):
 * what its version runs as is worked out, the module compiled and a filter's
 * warm VM started, all bounded and best effort; at the commit the version's
 * target is cached, so the first preview request reads nothing from the
 * database and runs in the VM already started. A module the test bed
 * refuses still has its build recorded succeeded.
 *
 * Through a real Kiln (embedded store, then the PostgreSQL and S3 servers)
 * and real runner processes: the repositories are the server's, wrapped
 * only to count their look-ups.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BuildEvents } from '../../src/api/build-events.ts';
import type { Services } from '../../src/api/services.ts';
import type { Build } from '../../src/store/metadata/repositories/builds.ts';
import type { Version } from '../../src/store/metadata/repositories/versions.ts';
import type { TestbedConfig } from '../../src/testbed/config.ts';
import { loadTestbedConfig } from '../../src/testbed/config.ts';
import type { HttpRequestData } from '../../src/testbed/http-message.ts';
import { RunnerTestbed } from '../../src/testbed/runner/client.ts';
import { TryVersion } from '../../src/use-cases/try-version.ts';
import type { SucceedingBuild } from '../../src/use-cases/worker-jobs.ts';
import { call, startTestKiln } from '../support/kiln.ts';
import type { StorageFlavour, TestKiln } from '../support/kiln.ts';
import { publish } from './support.ts';
import type { Json } from './support.ts';
import { filterWat, wat } from './wat.ts';

const FILTER = wat(filterWat('(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))'));
const request = (): HttpRequestData => ({ method: 'GET', path: '/', authority: 'example.test', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] });

/** The server's repositories, each call to a listed method counted (the calls still reach the real store). */
function countingLookups(services: Services, counted: Record<string, number>): Pick<Services, 'versions' | 'builds' | 'applications' | 'objects'> {
  const count = <T extends object>(name: string, repository: T): T =>
    new Proxy(repository, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          const key = `${name}.${String(property)}`;
          counted[key] = (counted[key] ?? 0) + 1;
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  return { versions: count('versions', services.versions), builds: count('builds', services.builds), applications: count('applications', services.applications), objects: services.objects };
}

for (const flavour of ['embedded', 'servers'] as StorageFlavour[]) describe(`a successful build is ready on the test bed before it is recorded succeeded (${flavour})`, { timeout: 180_000 }, () => {
  let t: TestKiln;
  let testbed: RunnerTestbed;
  let config: TestbedConfig;

  before(async () => {
    process.env.KILN_TESTBED_MAX_FUNCTIONS = '16';
    t = await startTestKiln({ flavour });
    config = { ...loadTestbedConfig({ KILN_TESTBED_RUNNERS: '1', KILN_TESTBED_WORKERS: '2', KILN_TESTBED_PREWARM: '1' }), timeoutMs: 10_000, previewCacheMs: 60_000 };
    testbed = new RunnerTestbed(config);
    // Readying is best effort: with no runner connected yet there is no slot to warm on. Wait for its slots.
    for (let i = 0; i < 600 && testbed.hub.scheduler.slotCount === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(testbed.hub.scheduler.slotCount > 0, 'the local runner connected');
  });
  after(async () => {
    delete process.env.KILN_TESTBED_MAX_FUNCTIONS;
    await testbed?.close();
    await t?.close();
  });

  /** A published filter's version and the build that succeeded, read back from the server's store. */
  async function published(): Promise<{ ownerId: string; version: Version; build: Build }> {
    const id = await publish(t, FILTER, { kind: 'proxy-wasm' });
    const [build] = await t.kiln.services.builds.listForVersions([id]);
    assert.ok(build, 'the published version has a build');
    const version = await t.kiln.services.versions.get(build.ownerId, id);
    assert.ok(version);
    return { ownerId: build.ownerId, version, build };
  }

  it('the first preview request after the commit runs in the VM started before it and looks nothing up', async () => {
    const { ownerId, version, build } = await published();
    const counted: Record<string, number> = {};
    const tryVersion = new TryVersion(countingLookups(t.kiln.services, counted), testbed, config);
    // As the report does: readied while the build is still running, then committed.
    await tryVersion.buildSucceeding({ build: { ...build, state: 'running' }, version });
    tryVersion.buildSucceeded(build);
    for (const key of Object.keys(counted)) delete counted[key];

    const first = await tryVersion.preview(ownerId, version.id, request(), {});
    assert.equal(first.kind, 'proxy-wasm');
    assert.equal(first.result.outcome, 'ok', first.result.message);
    assert.equal(first.result.vmStarted, false, 'the VM was started before the build was recorded succeeded');
    assert.deepEqual(counted, {}, 'the version, its build and its application came from what the commit cached');
  });

  it('without readying, the first request looks the version up and starts the VM itself (the control)', async () => {
    const { ownerId, version } = await published();
    const counted: Record<string, number> = {};
    const tryVersion = new TryVersion(countingLookups(t.kiln.services, counted), testbed, config);
    const first = await tryVersion.preview(ownerId, version.id, request(), {});
    assert.equal(first.kind, 'proxy-wasm');
    assert.equal(first.result.vmStarted, true);
    assert.ok((counted['versions.get'] ?? 0) > 0 && (counted['builds.latestSucceeded'] ?? 0) > 0, JSON.stringify(counted));
  });

  it('a module the test bed refuses still has its build recorded succeeded (readying only saves time)', async () => {
    // Above KILN_TESTBED_MAX_FUNCTIONS: the evaluator accepts it, the test bed's preparation refuses it.
    const functions = Array.from({ length: 40 }, (_, i) => `(func $extra${i})`).join('\n');
    const id = await publish(t, wat(filterWat(`${functions}\n(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))`)), { kind: 'proxy-wasm' });
    const builds = await call<Json>(t.url, 'GET', `/v1/builds?versionId=${id}`, { token: t.ownerToken });
    assert.equal(builds.body.items?.[0]?.state, 'succeeded', JSON.stringify(builds.body));
    const invoked = await call<Json>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token: t.ownerToken, json: {} });
    assert.equal(invoked.status, 422, 'the refusal shows on first use, with its error');
  });
});

describe('listeners told before a success is committed', () => {
  const candidate = { build: {}, version: {} } as unknown as SucceedingBuild;

  it('are waited for', async () => {
    const events = new BuildEvents();
    let done = false;
    events.onSucceeding(async () => {
      await new Promise((resolve) => setImmediate(resolve));
      done = true;
    }, { withinMs: 60_000 });
    await events.succeeding(candidate);
    assert.equal(done, true);
  });

  it('cannot hold the report beyond their bound, nor fail it', async () => {
    const events = new BuildEvents();
    events.onSucceeding(() => new Promise<void>(() => undefined), { withinMs: 20 });
    events.onSucceeding(async () => {
      throw new Error('readying failed');
    }, { withinMs: 60_000 });
    await events.succeeding(candidate);
  });

  it('are not waited for at all with a bound of 0', async () => {
    const events = new BuildEvents();
    let called = false;
    const stop = events.onSucceeding(async () => {
      called = true;
    }, { withinMs: 0 });
    await events.succeeding(candidate);
    stop();
    assert.equal(called, false);
  });
});
