/**
 * The fetch phase when things go wrong, through runBuild and the real
 * sandbox: a package that does not exist, a lock file that sends npm to
 * another host, no lock file, a lock that does not match package.json —
 * each a clear `failed`, and nothing cached. And the fetch sandbox itself
 * from an attacker's side (bubblewrap and gVisor): the only way out is the
 * egress proxy, which reaches nothing but the registry.
 */
import assert from 'node:assert/strict';
import { access, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadFetchConfig } from '../../src/fetch/config.ts';
import { startEgressProxy } from '../../src/fetch/egress-proxy.ts';
import { egressTargetOf } from '../../src/fetch/egress-rules.ts';
import { DependencyCacheStore } from '../../src/build-cache/store.ts';
import { createSandbox, createWorkDir, DEFAULT_LIMITS } from '../../src/sandbox/index.ts';
import { EGRESS_SOCKET, type Sandbox } from '../../src/sandbox/sandbox.ts';
import { runBuild, type BuildOutcome } from '../../src/worker/build-job.ts';
import { sandboxSkip } from '../testbed/support.ts';

const skip = await sandboxSkip();
const gvisorSkip = await access('/usr/bin/runsc').then(() => false, () => 'runsc is not installed');
const NAMESPACE = 'f00dfeedf00dfeed';
const MISSING = 'kiln-test-no-such-package-7c41e0d2';

/** A local server standing for "any other host": it records every request it gets. */
async function forbiddenServer(): Promise<{ port: number; hits: string[]; close(): void }> {
  const hits: string[] = [];
  const server = http.createServer((request, response) => {
    hits.push(`${request.method} ${request.url}`);
    response.end('stolen');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, hits, close: () => server.close() };
}

function lockFor(dependencies: Record<string, string>, packages: Record<string, unknown>): string {
  return JSON.stringify({ name: 'app', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'app', version: '1.0.0', dependencies }, ...packages } }, null, 2);
}

const ENTRY = 'export function proxy_abi_version_0_2_1(): void {}\n';

describe('fetch failures through runBuild in the sandbox', { skip, timeout: 600_000 }, () => {
  let scratch: string;
  let store: DependencyCacheStore;
  let sandbox: Sandbox;
  let forbidden: Awaited<ReturnType<typeof forbiddenServer>>;

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'kiln-fetch-failures-'));
    await chmod(scratch, 0o755);
    store = new DependencyCacheStore({ root: join(scratch, 'cache') });
    sandbox = createSandbox('bubblewrap');
    forbidden = await forbiddenServer();
  });
  after(async () => {
    forbidden?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  async function build(files: Record<string, string>, backend: Sandbox = sandbox): Promise<BuildOutcome & { log: string }> {
    const workDir = await createWorkDir(scratch, DEFAULT_LIMITS.diskBytes);
    try {
      for (const [name, content] of Object.entries(files)) {
        await mkdir(join(workDir.path, 'src', name, '..'), { recursive: true });
        await writeFile(join(workDir.path, 'src', name), content);
      }
      const log: Buffer[] = [];
      const outcome = await runBuild({
        jobDir: workDir.path,
        sandbox: backend,
        language: 'assemblyscript',
        kind: 'proxy-wasm',
        onLog: (chunk) => log.push(chunk),
        artifactPath: join(scratch, 'out.wasm'),
        dependencyCache: { store, namespace: NAMESPACE },
        fetch: loadFetchConfig(process.env),
      });
      return { ...outcome, log: Buffer.concat(log).toString('utf8') };
    } finally {
      await workDir.dispose();
    }
  }

  it('a lock file naming a package that does not exist: failed, with the registry’s answer, nothing cached', async () => {
    const outcome = await build({
      'package.json': JSON.stringify({ name: 'app', version: '1.0.0', dependencies: { [MISSING]: '1.0.0' } }),
      'package-lock.json': lockFor({ [MISSING]: '1.0.0' }, { [`node_modules/${MISSING}`]: { version: '1.0.0', resolved: `https://registry.npmjs.org/${MISSING}/-/${MISSING}-1.0.0.tgz`, integrity: 'sha512-AAAA' } }),
      'assembly/index.ts': ENTRY,
    });
    assert.equal(outcome.outcome, 'failed', outcome.log);
    assert.match(outcome.reason ?? '', /npm could not install the locked dependencies: .*(404|[Nn]ot [Ff]ound)/);
    assert.doesNotMatch(outcome.reason ?? '', /\n/);
    assert.equal((await store.usage()).entries, 0, 'a failed fetch caches nothing');
  });

  for (const backend of ['bubblewrap', 'gvisor'] as const) {
    it(`a lock file whose resolved URL points at another host: refused by the egress proxy, that host never hit (${backend})`, { skip: backend === 'gvisor' && gvisorSkip }, async () => {
      const outcome = await build({
        'package.json': JSON.stringify({ name: 'app', version: '1.0.0', dependencies: { 'left-pad': '1.3.0' } }),
        'package-lock.json': lockFor({ 'left-pad': '1.3.0' }, { 'node_modules/left-pad': { version: '1.3.0', resolved: `http://127.0.0.1:${forbidden.port}/left-pad-1.3.0.tgz`, integrity: 'sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQEmuaB3+6hRVFWK7Wm8+WHrE/BNc1mGRFkPVY9e6wswf7EQ==' } }),
        'assembly/index.ts': ENTRY,
      }, backend === 'gvisor' ? createSandbox('gvisor') : sandbox);
      assert.equal(outcome.outcome, 'failed', outcome.log);
      assert.match(outcome.reason ?? '', new RegExp(`tried to reach 127\\.0\\.0\\.1:${forbidden.port}, which is not the configured registry .*refused`));
      assert.match(outcome.log, /kiln: fetch: refused a connection to 127\.0\.0\.1:\d+/);
      assert.deepEqual(forbidden.hits, []);
      assert.equal((await store.usage()).entries, 0);
    });
  }

  it('a registry configured elsewhere is the only host reached: the public one is refused', async () => {
    const config = { ...loadFetchConfig(process.env), npmRegistry: new URL(`http://127.0.0.1:${forbidden.port}/`) };
    const workDir = await createWorkDir(scratch, DEFAULT_LIMITS.diskBytes);
    try {
      await mkdir(join(workDir.path, 'src', 'assembly'), { recursive: true });
      await writeFile(join(workDir.path, 'src', 'assembly/index.ts'), ENTRY);
      await writeFile(join(workDir.path, 'src', 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', dependencies: { 'left-pad': '1.3.0' } }));
      // A lock pinned to another registry than the configured one (npm only rewrites registry.npmjs.org URLs).
      await writeFile(join(workDir.path, 'src', 'package-lock.json'), lockFor({ 'left-pad': '1.3.0' }, { 'node_modules/left-pad': { version: '1.3.0', resolved: 'https://registry.yarnpkg.com/left-pad/-/left-pad-1.3.0.tgz', integrity: 'sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQEmuaB3+6hRVFWK7Wm8+WHrE/BNc1mGRFkPVY9e6wswf7EQ==' } }));
      const log: Buffer[] = [];
      const outcome = await runBuild({ jobDir: workDir.path, sandbox, onLog: (chunk) => log.push(chunk), artifactPath: join(scratch, 'out.wasm'), fetch: config });
      assert.equal(outcome.outcome, 'failed', Buffer.concat(log).toString('utf8'));
      assert.match(outcome.reason ?? '', /tried to reach registry\.yarnpkg\.com:443, which is not the configured registry \(http:\/\/127\.0\.0\.1:\d+\): refused/);
    } finally {
      await workDir.dispose();
    }
  });

  it('dependencies without a lock file, and a lock that does not match package.json: clear failures before any fetch', async () => {
    const noLock = await build({ 'package.json': JSON.stringify({ dependencies: { '@solo-io/proxy-runtime': '0.1.8' } }), 'assembly/index.ts': ENTRY });
    assert.equal(noLock.outcome, 'failed');
    assert.match(noLock.reason ?? '', /declares dependencies \(@solo-io\/proxy-runtime\) but there is no package-lock\.json/);
    const mismatch = await build({
      'package.json': JSON.stringify({ dependencies: { '@solo-io/proxy-runtime': '0.1.8' } }),
      'package-lock.json': lockFor({ '@solo-io/proxy-runtime': '0.1.1' }, {}),
      'assembly/index.ts': ENTRY,
    });
    assert.equal(mismatch.outcome, 'failed');
    assert.match(mismatch.reason ?? '', /package-lock\.json does not match package\.json: @solo-io\/proxy-runtime is "0\.1\.8" in package\.json but "0\.1\.1" in the lock file/);
    assert.ok(!mismatch.stages.some((stage) => stage.name === 'fetch'));
  });
});

/** Runs inside the fetch sandbox: every way out an attacker would try, reported as JSON. */
const ESCAPE_SCRIPT = `
const net = require('node:net');
const http = require('node:http');
const target = Number(process.argv[1]);
const results = {};
function attempt(name, work) { return new Promise((resolve) => { work((value) => { results[name] = value; resolve(); }); }); }
(async () => {
  await attempt('direct', (done) => { const s = net.connect(target, '127.0.0.1'); s.on('connect', () => { s.destroy(); done('connected'); }); s.on('error', (e) => done(e.code)); });
  await attempt('viaProxy', (done) => { const u = new URL(process.env.HTTP_PROXY); http.get({ host: u.hostname, port: u.port, path: 'http://127.0.0.1:' + target + '/x', headers: { host: '127.0.0.1:' + target } }, (r) => { let b = ''; r.on('data', (c) => b += c); r.on('end', () => done(r.statusCode + ' ' + b.trim())); }).on('error', (e) => done(e.code)); });
  await attempt('socketConnect', (done) => { const s = net.connect('${EGRESS_SOCKET}'); let b = ''; s.on('data', (c) => b += c); s.on('end', () => done(b.split('\\r\\n')[0])); s.on('error', (e) => done(e.code)); s.write('CONNECT 127.0.0.1:' + target + ' HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'); });
  await attempt('udp', (done) => { const d = require('node:dgram').createSocket('udp4'); d.send('x', target, '10.0.0.1', (e) => { d.close(); done(e ? e.code : 'sent'); }); });
  console.log('RESULTS ' + JSON.stringify(results));
})();
`;

for (const backend of ['bubblewrap', 'gvisor'] as const) {
  const backendSkip = backend === 'gvisor' ? gvisorSkip : false;
  describe(`the fetch sandbox from inside (${backend})`, { skip: skip || backendSkip, timeout: 300_000 }, () => {
    it('reaches other hosts neither directly nor through the proxy or its socket', async () => {
      const forbidden = await forbiddenServer();
      const scratch = await mkdtemp(join(tmpdir(), 'kiln-fetch-escape-'));
      await chmod(scratch, 0o755);
      const proxy = await startEgressProxy({ allowed: [egressTargetOf(new URL('https://registry.npmjs.org/'))] });
      try {
        const workDir = await createWorkDir(scratch, DEFAULT_LIMITS.diskBytes);
        const output: Buffer[] = [];
        const result = await createSandbox(backend).run({
          command: ['/usr/bin/node', '/opt/kiln/fetch/forwarder.mjs', EGRESS_SOCKET, '--', '/usr/bin/node', '-e', ESCAPE_SCRIPT, String(forbidden.port)],
          env: {},
          cwd: '/build',
          workDir: workDir.path,
          mounts: [{ host: new URL('../../src/fetch/sandbox', import.meta.url).pathname, sandbox: '/opt/kiln/fetch' }],
          limits: { ...DEFAULT_LIMITS, wallMs: 120_000 },
          egress: { socket: proxy.socketPath },
          onOutput: (chunk) => output.push(chunk),
        });
        await workDir.dispose();
        const text = Buffer.concat(output).toString('utf8');
        assert.equal(result.exitCode, 0, text);
        const results = JSON.parse(/RESULTS (.*)/.exec(text)?.[1] ?? '{}') as Record<string, string>;
        assert.match(results.direct ?? '', /^E/, `a direct connection must fail inside the sandbox's own network namespace: ${text}`);
        assert.match(results.viaProxy ?? '', /^403 kiln egress proxy: refused 127\.0\.0\.1:\d+/, text);
        assert.match(results.socketConnect ?? '', /^HTTP\/1\.1 403/, text);
        assert.match(results.udp ?? '', /^E/, text);
        assert.deepEqual(forbidden.hits, []);
      } finally {
        await proxy.close();
        forbidden.close();
        await rm(scratch, { recursive: true, force: true });
      }
    });
  });
}
