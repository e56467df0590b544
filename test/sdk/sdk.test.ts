/**
 * Kiln's Proxy-Wasm SDKs (sdk/rust/kiln-proxy-wasm, sdk/assemblyscript):
 * the example filters rewritten on them and one extra filter per SDK (body
 * helpers, properties, a local response), built by runBuild in the
 * bubblewrap sandbox with the SDKs provided by Kiln, not by the upload, then
 * run on the test bed through invoke.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readlink, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeAssemblyScriptBodyFilter } from './assemblyscript-body-filter.ts';
import { createAssemblyScript } from '../../src/languages/assemblyscript/index.ts';
import { writeOfflineSetup } from '../../src/languages/rust/offline-registry.ts';
import { DEFAULT_RUST_SDK_DIR, SANDBOX_RUST_SDK_DIR } from '../../src/languages/rust/sdk.ts';
import { call, startTestKiln } from '../support/kiln.ts';
import type { TestKiln } from '../support/kiln.ts';
import { EXAMPLES, publish, SandboxBuilder, sandboxSkip } from '../testbed/support.ts';
import type { Json } from '../testbed/support.ts';

const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;

const header = (pairs: Array<[string, string]>, key: string): string | undefined => pairs.find(([k]) => k === key)?.[1];

describe('the Rust SDK in the offline registry', () => {
  it('links kiln-proxy-wasm into every build’s directory source, read-only from the SDK mount', async () => {
    const jobDir = await mkdtemp(join(tmpdir(), 'kiln-sdk-registry-'));
    try {
      const setup = await writeOfflineSetup(jobDir, join(jobDir, 'src'), { host: '/usr/share/cargo/registry', sandbox: '/usr/share/cargo/registry' }, () => {}, {
        host: DEFAULT_RUST_SDK_DIR,
        sandbox: SANDBOX_RUST_SDK_DIR,
      });
      assert.equal(setup.sandboxDirectory, '/build/cargo-registry');
      assert.equal(await readlink(join(jobDir, 'cargo-registry', 'kiln-proxy-wasm-0.1.0')), `${SANDBOX_RUST_SDK_DIR}/kiln-proxy-wasm`);
      assert.match(await readFile(join(setup.cargoHome, 'config.toml'), 'utf8'), /directory = "\/build\/cargo-registry"/);
      assert.deepEqual(JSON.parse(await readFile(join(DEFAULT_RUST_SDK_DIR, 'kiln-proxy-wasm', '.cargo-checksum.json'), 'utf8')), { files: {} });
    } finally {
      await rm(jobDir, { recursive: true, force: true });
    }
  });
});

describe('the AssemblyScript SDK', () => {
  it('makes a source importing kiln-proxy-wasm a filter', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'kiln-sdk-as-'));
    try {
      await writeAssemblyScriptBodyFilter(directory);
      const detection = await createAssemblyScript().detect(directory);
      assert.deepEqual(detection, { language: 'assemblyscript', kind: 'proxy-wasm' });
    } finally {
      await rm(directory, { recursive: true, force: true });
    }
  });
});

const skip = await sandboxSkip();

describe('filters on the SDKs, built in the sandbox, on the test bed', { skip, timeout: 600_000 }, () => {
  let t: TestKiln;
  let builder: SandboxBuilder;
  const invoke = async (id: string, json: Json): Promise<Json> => {
    const answer = await call<Json>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token: t.ownerToken, json });
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.outcome, 'ok', `${answer.body.message ?? ''} ${JSON.stringify(answer.body.logs)}`);
    return answer.body;
  };
  const deploy = async (source: string, name: string): Promise<{ id: string; module: Uint8Array<ArrayBuffer> }> => {
    const module = await builder.build(source, 'proxy-wasm');
    return { id: await publish(t, module, { kind: 'proxy-wasm', name }), module };
  };

  before(async () => {
    process.env.KILN_TESTBED_WORKERS = '1';
    t = await startTestKiln();
    builder = new SandboxBuilder();
  });

  after(async () => {
    await t?.close();
    await builder?.dispose();
    delete process.env.KILN_TESTBED_WORKERS;
  });

  for (const example of ['rust-filter', 'assemblyscript-filter']) {
    it(`${example} (on the SDK): x-kiln on the response, logged`, async () => {
      const { id, module } = await deploy(`${EXAMPLES}${example}`, example);
      const exports = WebAssembly.Module.exports(new WebAssembly.Module(module)).map((entry) => entry.name);
      for (const name of ['_initialize', 'proxy_abi_version_0_2_1', 'proxy_on_memory_allocate', 'proxy_on_context_create', 'proxy_on_response_headers']) {
        assert.ok(exports.includes(name), `${name} in ${exports.join(', ')}`);
      }
      const body = await invoke(id, { request: { path: '/hello' } });
      assert.deepEqual(body.response.changes.headers.added, [['x-kiln', 'hello']]);
      assert.ok(body.logs.some((line: Json) => line.message.startsWith(`${example}: added x-kiln to the response of context `) && line.level === 'info'), JSON.stringify(body.logs));
    });
  }

  const bodyFilters = [
    { name: 'rust-body-filter', tag: '[rust] ', sdkHeader: 'x-rust-sdk', blockedBy: 'rust-sdk', write: undefined },
    { name: 'assemblyscript-body-filter', tag: '[as] ', sdkHeader: 'x-as-sdk', blockedBy: 'as-sdk', write: writeAssemblyScriptBodyFilter },
  ];
  for (const filter of bodyFilters) {
    it(`${filter.name}: header and body helpers, properties, a local response`, async () => {
      let source = `${FIXTURES}${filter.name}`;
      if (filter.write !== undefined) {
        source = await mkdtemp(join(tmpdir(), 'kiln-sdk-fixture-'));
        await filter.write(source);
      }
      const { id } = await deploy(source, filter.name).finally(() => (filter.write === undefined ? undefined : rm(source, { recursive: true, force: true })));
      const passed = await invoke(id, {
        request: { method: 'POST', path: '/echo', headers: { 'x-remove-me': '1', 'content-type': 'text/plain' }, body: { text: 'payload' } },
        response: { status: 200, headers: { 'content-type': 'text/plain' }, body: { text: 'hello from upstream' } },
      });
      assert.equal(passed.request.forwarded, true);
      assert.equal(header(passed.request.headers, 'x-path-seen'), '/echo');
      assert.equal(header(passed.request.headers, 'x-remove-me'), undefined);
      assert.deepEqual(passed.request.changes.headers.removed, [['x-remove-me', '1']]);
      assert.equal(passed.request.body.text, `${filter.tag}payload`);
      assert.equal(passed.request.changes.body, true);
      assert.equal(passed.response.status, 200);
      assert.equal(passed.response.body.text, 'HELLO FROM UPSTREAM');
      assert.equal(header(passed.response.headers, filter.sdkHeader), 'yes');
      assert.ok(passed.logs.some((line: Json) => /request headers$/.test(line.message)), JSON.stringify(passed.logs));

      const blocked = await invoke(id, { request: { path: '/blocked/x' } });
      assert.equal(blocked.request.forwarded, false);
      assert.equal(blocked.upstream, null);
      assert.equal(blocked.response.source, 'local');
      assert.equal(blocked.response.status, 403);
      assert.equal(blocked.response.body.text, `blocked by ${filter.name}`);
      assert.equal(header(blocked.response.headers, 'x-blocked-by'), filter.blockedBy);
      assert.equal(blocked.localResponse.sentFrom, 'proxy_on_request_headers');
      assert.ok(blocked.logs.some((line: Json) => line.level === 'warn' && line.message === `${filter.name}: blocked /blocked/x`), JSON.stringify(blocked.logs));
    });
  }
});
