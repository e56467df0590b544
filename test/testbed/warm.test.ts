/**
 * A filter whose build succeeded is made ready before its first request:
 * the runner compiles it and starts its warm VM on a free slot, and the
 * first preview request runs in that VM (issue 16: the first request after
 * an upload). Through a real runner process, without the HTTP API.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { loadTestbedConfig } from '../../src/testbed/config.ts';
import type { HttpRequestData } from '../../src/testbed/http-message.ts';
import { RunnerTestbed } from '../../src/testbed/runner/client.ts';
import type { PluginSettings } from '../../src/testbed/testbed.ts';
import { filterWat, wat } from './wat.ts';

const artifact = (bytes: Uint8Array) => ({ sha256: createHash('sha256').update(bytes).digest('hex'), load: async () => bytes });
const pluginOf = (versionId: string): PluginSettings => ({ info: { ownerId: 'owner-warm', name: 'warm', rootId: '', vmId: versionId, versionId, version: '1.0.0', applicationId: 'app' }, config: '' });
const request = (): HttpRequestData => ({ method: 'GET', path: '/', authority: 'example.test', scheme: 'http', headers: [], body: new Uint8Array(0), trailers: [] });

const FILTER = wat(filterWat('(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))'));

/** Counts requests in linear memory and traps from the second one on: it passes only if no state survives a request. */
const ONCE_PER_INSTANCE_FILTER = wat(
  filterWat(
    `(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
       (i32.store (i32.const 2000) (i32.add (i32.load (i32.const 2000)) (i32.const 1)))
       (if (i32.gt_u (i32.load (i32.const 2000)) (i32.const 1)) (then unreachable))
       (i32.const 0))`,
  ),
);

describe('warming a filter when its build succeeds, and fresh instances started ahead', { timeout: 120_000 }, () => {
  let testbed: RunnerTestbed;

  before(() => {
    testbed = new RunnerTestbed({ ...loadTestbedConfig({ KILN_TESTBED_RUNNERS: '1', KILN_TESTBED_WORKERS: '2', KILN_TESTBED_PREWARM: '1' }), timeoutMs: 10_000 });
  });
  after(() => testbed.close());

  it('starts the warm VM the first preview request then uses', async () => {
    for (let i = 0; i < 600 && testbed.hub.scheduler.slotCount === 0; i++) await new Promise((resolve) => setTimeout(resolve, 50));
    const warmed = await testbed.warmFilter(artifact(FILTER), pluginOf('v-warmed'));
    assert.equal(warmed, true, 'a slot was free and the VM started');
    const first = await testbed.serveFilter(artifact(FILTER), pluginOf('v-warmed'), request(), {}, 'echo');
    assert.equal(first.outcome, 'ok', first.message);
    assert.equal(first.vmStarted, false, 'the first request ran in the VM started at build time');
  });

  it('a request that arrives while its version is being warmed waits for that VM instead of starting another', async () => {
    const FRESH_COPY = wat(filterWat('(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)) (data (i32.const 300) "racing")'));
    const warming = testbed.warmFilter(artifact(FRESH_COPY), pluginOf('v-racing'));
    const first = await testbed.serveFilter(artifact(FRESH_COPY), pluginOf('v-racing'), request(), {}, 'echo');
    assert.equal(await warming, true);
    assert.equal(first.outcome, 'ok', first.message);
    assert.equal(first.vmStarted, false, 'the request used the VM the warming started');
  });

  it('gives every fresh-instance preview request a VM no request used before (the next one is started ahead)', async () => {
    for (let i = 0; i < 4; i++) {
      const result = await testbed.serveFilter(artifact(ONCE_PER_INSTANCE_FILTER), pluginOf('v-fresh'), request(), {}, 'echo', true);
      assert.equal(result.outcome, 'ok', `request ${i + 1}: ${result.message ?? ''}`);
      assert.equal(result.vmStarted, true);
    }
    // The control: the warm VM of the same filter keeps its state, so its second request traps.
    const warm = [];
    for (let i = 0; i < 2; i++) warm.push(await testbed.serveFilter(artifact(ONCE_PER_INSTANCE_FILTER), pluginOf('v-kept'), request(), {}, 'echo'));
    assert.deepEqual(warm.map((result) => result.outcome), ['ok', 'trap']);
  });

  it('without warming, the first request starts the VM itself (the control)', async () => {
    const first = await testbed.serveFilter(artifact(FILTER), pluginOf('v-cold'), request(), {}, 'echo');
    assert.equal(first.outcome, 'ok', first.message);
    assert.equal(first.vmStarted, true);
  });
});
