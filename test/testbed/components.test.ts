/**
 * JavaScript and TypeScript edge functions through the real pipeline: built
 * by runBuild in the bubblewrap sandbox (esbuild + componentize-js, offline),
 * published as http-component versions, and run by the test bed's component
 * engine through POST /v1/versions/:id/invoke and the preview URL, on both
 * storage flavours. Needs root, bubblewrap and the JS toolchain
 * (scripts/install-js-toolchain.sh).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { access, chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toolchainDir } from '../../src/languages/javascript/toolchain.ts';
import { createSandbox, createWorkDir, DEFAULT_LIMITS } from '../../src/sandbox/index.ts';
import { runBuild, type BuildOutcome } from '../../src/worker/build-job.ts';
import { databaseBackends, s3Skip } from '../support/backends.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type StorageFlavour, type TestKiln } from '../support/kiln.ts';
import { EXAMPLES, FIXTURES, publish, SandboxBuilder, sandboxSkip } from './support.ts';
import type { Json } from './support.ts';
import { filterWat, wat } from './wat.ts';

async function toolchainSkip(): Promise<string | false> {
  const sandbox = await sandboxSkip();
  if (sandbox) return sandbox;
  try {
    await access(join(toolchainDir(), 'node_modules/@bytecodealliance/componentize-js/package.json'));
    await access(join(toolchainDir(), 'wit/world.wit'));
    return false;
  } catch {
    return 'the JavaScript component toolchain is not installed (bash scripts/install-js-toolchain.sh)';
  }
}

const skip = await toolchainSkip();
/** componentize-js takes 10–15 s alone and minutes on a loaded 2-core machine; three builds plus two Kilns. */
const SUITE_TIMEOUT = 30 * 60_000;

/** Builds a source tree written by `write` and returns the outcome and log, whatever it is. */
async function buildTree(write: (sourceDir: string) => Promise<void>): Promise<{ outcome: BuildOutcome; log: string }> {
  const scratch = await mkdtemp(join(tmpdir(), 'kiln-js-build-'));
  await chmod(scratch, 0o755);
  const workDir = await createWorkDir(scratch, DEFAULT_LIMITS.diskBytes);
  try {
    await write(join(workDir.path, 'src'));
    const chunks: Buffer[] = [];
    const outcome = await runBuild({ jobDir: workDir.path, sandbox: createSandbox('bubblewrap'), onLog: (chunk) => chunks.push(chunk), artifactPath: join(scratch, 'out.wasm') });
    return { outcome, log: Buffer.concat(chunks).toString('utf8') };
  } finally {
    await workDir.dispose();
    await rm(scratch, { recursive: true, force: true });
  }
}

async function writeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
}

/** Plays the worker reporting `module` as a build's artifact, and answers the build as the evaluator left it. */
async function reportArtifact(t: TestKiln, module: Uint8Array, kind: string): Promise<Json> {
  const owner = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.ownerToken, ...options });
  const worker = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.workerToken, ...options });
  const app = await owner('POST', '/v1/applications', { json: { name: `core-as-component-${Date.now()}` } });
  const upload = await owner('POST', `/v1/applications/${app.body.id}/versions`, { body: versionForm({ version: '1.0.0', kind, config: '' }, await tinyCProject()) });
  assert.equal(upload.status, 202, JSON.stringify(upload.body));
  const claimed = await worker('POST', '/internal/v1/jobs/claim', { json: { workerId: 'component-test', waitMs: 5_000 } });
  const job = claimed.body.job as Json;
  const lease = { 'x-kiln-lease': job.leaseToken as string };
  await worker('PUT', `/internal/v1/jobs/${job.id}/artifacts/original`, { body: new Uint8Array(module), headers: { ...lease, 'content-type': 'application/wasm' } });
  const result = await worker('POST', `/internal/v1/jobs/${job.id}/result`, { json: { outcome: 'succeeded', stages: [] }, headers: lease });
  return result.body.build as Json;
}

describe('JavaScript and TypeScript builds', { skip, timeout: SUITE_TIMEOUT }, () => {
  it('a syntax error fails the build naming the user’s file and line (before componentize runs)', async () => {
    const { outcome, log } = await buildTree((dir) =>
      writeFiles(dir, {
        'package.json': JSON.stringify({ name: 'broken', main: 'src/index.ts' }),
        'src/index.ts': "import { answer } from './answer.ts';\naddEventListener('fetch', (event: any) => event.respondWith(new Response(answer())));\n",
        'src/answer.ts': 'export function answer(): string {\n  const value = (1 + 2;\n  return String(value);\n}\n',
      }),
    );
    assert.equal(outcome.outcome, 'failed', log);
    assert.equal(outcome.language, 'typescript');
    assert.match(outcome.reason ?? '', /^src\/answer\.ts:2:23: error: Expected "\)" but found ";"$/);
    assert.doesNotMatch(log, /==> \[2\/2\] componentize-js/, 'the component step never ran');
  });

  it('npm dependencies are refused, in one clear sentence, until the fetch phase exists', async () => {
    const { outcome, log } = await buildTree((dir) =>
      writeFiles(dir, { 'package.json': JSON.stringify({ name: 'deps', main: 'src/index.js', dependencies: { hono: '^4.0.0' } }), 'src/index.js': 'export {};\n' }),
    );
    assert.equal(outcome.outcome, 'failed', log);
    assert.match(outcome.reason ?? '', /declares npm dependencies \(hono\); JavaScript and TypeScript apps cannot use npm packages yet/);
  });

  it('a package.json main outside the upload is refused', async () => {
    const { outcome } = await buildTree((dir) => writeFiles(dir, { 'package.json': JSON.stringify({ name: 'escape', main: '../../etc/passwd.js' }), 'src/index.js': '' }));
    assert.equal(outcome.outcome, 'failed');
  });
});

const flavours: Array<{ flavour: StorageFlavour; skip: string | false }> = [
  { flavour: 'embedded', skip: false },
  { flavour: 'servers', skip: s3Skip() || databaseBackends().find((backend) => backend.name === 'PostgreSQL')?.skip || false },
];

/** The response limit of outgoing calls these tests run with (KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES). */
const CALL_RESPONSE_LIMIT = 256 * 1024;

/**
 * The allowed upstream of the outgoing tests: `/hello` answers with a header
 * and what it received, `/medium` with a body of several bridge chunks under
 * the limit, `/big` with one byte past it, `/hang` never; anything else
 * "backend".
 */
function backendAnswer(request: http.IncomingMessage, response: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    if (request.url === '/hello') {
      response.setHeader('x-upstream', 'backend-hello');
      response.end(`${request.method} ${request.url} from=${String(request.headers['x-from-component'])} host=${String(request.headers.host)} body=${Buffer.concat(chunks).toString()}`);
    } else if (request.url === '/medium') response.end('m'.repeat(150_000));
    else if (request.url === '/big') response.end('b'.repeat(CALL_RESPONSE_LIMIT + 1));
    else if (request.url !== '/hang') response.end('backend');
  });
}

describe('http-components on the test bed', { skip, timeout: SUITE_TIMEOUT }, () => {
  const builder = new SandboxBuilder();
  const modules: Record<'js' | 'ts' | 'probe', Uint8Array> = { js: new Uint8Array(), ts: new Uint8Array(), probe: new Uint8Array() };
  let backend: http.Server;
  let backendPort = 0;

  before(async () => {
    modules.js = await builder.build(`${EXAMPLES}js-handler`);
    modules.ts = await builder.build(`${EXAMPLES}ts-handler`);
    modules.probe = await builder.build(`${FIXTURES}component-probe`, 'http-component');
    backend = http.createServer(backendAnswer);
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    backendPort = (backend.address() as AddressInfo).port;
  });

  after(async () => {
    await builder.dispose();
    backend?.close();
  });

  for (const { flavour, skip: flavourSkip } of flavours) {
    describe(flavour === 'embedded' ? 'PGlite + filesystem' : 'PostgreSQL + Ceph S3', { skip: flavourSkip }, () => {
      let t: TestKiln;
      const ids: Record<string, string> = {};
      const invoke = (id: string, json: unknown) => call<Json>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token: t.ownerToken, json });
      const header = (pairs: Array<[string, string]>, key: string) => pairs.find(([k]) => k === key)?.[1];

      before(async () => {
        process.env.KILN_TESTBED_UPSTREAMS = `backend=http://127.0.0.1:${backendPort}`;
        process.env.KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES = String(CALL_RESPONSE_LIMIT);
        t = await startTestKiln({ flavour });
        ids.js = await publish(t, modules.js, { kind: 'http-component', name: 'js-handler' });
        ids.ts = await publish(t, modules.ts, { kind: 'http-component', name: 'ts-handler' });
        ids.probe = await publish(t, modules.probe, { kind: 'http-component', name: 'component-probe' });
      });

      after(async () => {
        await t?.close();
        delete process.env.KILN_TESTBED_UPSTREAMS;
        delete process.env.KILN_TESTBED_MAX_HTTP_CALL_RESPONSE_BYTES;
      });

      it('JS handler: status, headers, body and logs through invoke', async () => {
        const { status, body } = await invoke(ids.js as string, { request: { path: '/?name=kiln' } });
        assert.equal(status, 200, JSON.stringify(body));
        assert.equal(body.kind, 'http-component');
        assert.equal(body.outcome, 'ok', body.message);
        assert.equal(body.response.status, 200);
        assert.equal(header(body.response.headers, 'x-kiln-example'), 'js-handler');
        assert.equal(body.response.body.text, 'hello, kiln\n');
        assert.deepEqual(body.logs, [{ stream: 'stdout', line: 'GET /' }]);
        assert.equal(typeof body.timings.handleMs, 'number');
        assert.equal(body.module.sha256.length, 64);
      });

      it('JS handler: a 404, a POST body echoed, and a thrown error as the app’s own 500 with its stderr', async () => {
        const missing = await invoke(ids.js as string, { request: { path: '/missing' } });
        assert.equal(missing.body.response.status, 404);
        const echo = await invoke(ids.js as string, { request: { method: 'POST', path: '/echo', headers: { 'content-type': 'text/csv' }, body: { text: 'a,b\n1,2' } } });
        assert.equal(echo.body.response.body.text, 'a,b\n1,2');
        assert.equal(header(echo.body.response.headers, 'content-type'), 'text/csv');
        const thrown = await invoke(ids.js as string, { request: { path: '/throw' } });
        assert.equal(thrown.status, 200, 'a guest failure is a result, not an API error');
        assert.equal(thrown.body.response.status, 500);
        assert.ok(
          thrown.body.logs.some((line: Json) => line.stream === 'stderr' && /the handler failed on purpose/.test(line.line)),
          JSON.stringify(thrown.body.logs),
        );
      });

      it('TS handler: JSON body, a 418, and a throw, through invoke and the preview URL', async () => {
        const root = await invoke(ids.ts as string, { request: { path: '/?name=ts' } });
        assert.equal(root.body.outcome, 'ok', root.body.message);
        assert.deepEqual(JSON.parse(root.body.response.body.text), { hello: 'ts' });
        const teapot = await fetch(`${t.url}/preview/${ids.ts}/teapot`, { headers: { authorization: `Bearer ${t.ownerToken}` } });
        assert.equal(teapot.status, 418);
        assert.equal(await teapot.text(), "I'm a teapot\n");
        assert.match(teapot.headers.get('server-timing') ?? '', /component;dur=/);
        const preview = await fetch(`${t.url}/preview/${ids.ts}/?name=preview`, { headers: { authorization: `Bearer ${t.ownerToken}` } });
        assert.equal(preview.status, 200);
        assert.equal(preview.headers.get('x-kiln-example'), 'ts-handler');
        assert.deepEqual(await preview.json(), { hello: 'preview' });
        const thrown = await fetch(`${t.url}/preview/${ids.ts}/throw`, { headers: { authorization: `Bearer ${t.ownerToken}` } });
        assert.equal(thrown.status, 500);
      });

      it('outgoing HTTP to a host that is not allowed is refused; to an allowed upstream it is let through the allow-list', async () => {
        const refused = await invoke(ids.probe as string, { request: { path: `/outgoing?to=${encodeURIComponent('http://169.254.169.254/latest/meta-data/')}` } });
        assert.equal(refused.body.outcome, 'ok', refused.body.message);
        assert.equal(refused.body.response.status, 502);
        assert.match(refused.body.response.body.text, /^refused:/);
        assert.deepEqual(refused.body.outgoing, [{ authority: '169.254.169.254', pathWithQuery: '/latest/meta-data/', allowed: false }]);
        const allowed = await invoke(ids.probe as string, { request: { path: `/outgoing?to=${encodeURIComponent(`http://127.0.0.1:${backendPort}/x`)}` } });
        assert.equal(allowed.body.outgoing[0]?.allowed, true, JSON.stringify(allowed.body.outgoing));
      });

      it('outgoing HTTP to an allowed upstream is performed: the handler relays its status, header and body (GET and POST, several chunks)', async () => {
        const hello = `http://127.0.0.1:${backendPort}/hello`;
        const got = await invoke(ids.probe as string, { request: { path: `/relay?to=${encodeURIComponent(hello)}` } });
        assert.equal(got.body.outcome, 'ok', got.body.message);
        assert.equal(got.body.response.status, 200);
        assert.equal(got.body.response.body.text, `relayed 200 backend-hello GET /hello from=probe host=127.0.0.1:${backendPort} body=`);
        assert.deepEqual(got.body.outgoing, [{ authority: `127.0.0.1:${backendPort}`, pathWithQuery: '/hello', allowed: true, status: 200 }]);
        const posted = await invoke(ids.probe as string, { request: { method: 'POST', path: `/relay?to=${encodeURIComponent(hello)}`, body: { text: 'payload' } } });
        assert.equal(posted.body.response.body.text, `relayed 200 backend-hello POST /hello from=probe host=127.0.0.1:${backendPort} body=payload`);
        const medium = await invoke(ids.probe as string, { request: { path: `/relay?to=${encodeURIComponent(`http://127.0.0.1:${backendPort}/medium`)}` } });
        assert.equal(medium.body.response.body.text, `relayed 200 - ${'m'.repeat(150_000)}`, 'a body of three bridge chunks arrives whole');
      });

      it('an upstream answer past maxHttpCallResponseBytes fails the fetch and names the limit; a hanging upstream ends at the deadline', async () => {
        const big = await invoke(ids.probe as string, { request: { path: `/relay?to=${encodeURIComponent(`http://127.0.0.1:${backendPort}/big`)}` } });
        assert.equal(big.body.outcome, 'ok', big.body.message);
        assert.equal(big.body.response.status, 502);
        assert.match(big.body.response.body.text, /^failed:/);
        assert.equal(big.body.outgoing.length, 1);
        assert.equal(big.body.outgoing[0].allowed, true);
        assert.equal(big.body.outgoing[0].limit, 'maxHttpCallResponseBytes', JSON.stringify(big.body.outgoing));
        const hang = await invoke(ids.probe as string, { request: { path: `/relay?to=${encodeURIComponent(`http://127.0.0.1:${backendPort}/hang`)}` }, limits: { timeoutMs: 1_500 } });
        assert.equal(hang.body.outcome, 'timeout', JSON.stringify(hang.body));
        const after = await invoke(ids.probe as string, { request: { path: '/after-hang' } });
        assert.equal(after.body.outcome, 'ok', after.body.message);
        assert.equal(after.body.response.body.text, 'GET /after-hang ');
      });

      it('a busy loop ends at the deadline, and the next request is served by a fresh worker', async () => {
        const busy = await invoke(ids.probe as string, { request: { path: '/busy' }, limits: { timeoutMs: 1_000 } });
        assert.equal(busy.status, 200, JSON.stringify(busy.body));
        assert.equal(busy.body.outcome, 'timeout');
        assert.equal(busy.body.response, null);
        const after = await invoke(ids.probe as string, { request: { method: 'PUT', path: '/again', body: { text: 'still here' } } });
        assert.equal(after.body.outcome, 'ok', after.body.message);
        assert.equal(after.body.response.body.text, 'PUT /again still here');
      });

      it('fields that do not apply to a component are a 400', async () => {
        const wrong = await invoke(ids.js as string, { input: { text: 'stdin' } });
        assert.equal(wrong.status, 400);
      });

      it('a core module uploaded as an http-component fails the build with a clear reason', async () => {
        const build = await reportArtifact(t, wat(filterWat('')), 'http-component');
        assert.equal(build.state, 'failed');
        assert.match(build.reason, /core WebAssembly module, but an http-component must be a WebAssembly component/);
      });

      it('runs in a runner process, not the API process: the runner counts the call, and killing it loses the call', async () => {
        const runners = async () => (await call<Json>(t.url, 'GET', '/v1/testbed/runners', { token: t.adminToken })).body;
        const before = await runners();
        assert.equal(before.runners.length, 1, JSON.stringify(before));
        const runnerPid = before.runners[0].pid as number;
        assert.notEqual(runnerPid, process.pid, 'the runner is another process');
        const ok = await invoke(ids.js as string, { request: { path: '/?name=runner' } });
        assert.equal(ok.body.outcome, 'ok', ok.body.message);
        assert.equal((await runners()).runners[0].calls, before.runners[0].calls + 1, 'the component call went through the runner');

        const pending = invoke(ids.probe as string, { request: { path: '/busy' }, limits: { timeoutMs: 10_000 } });
        let running = false;
        for (let i = 0; i < 300 && !running; i++) {
          const listing = await runners();
          running = Object.values(listing.owners as Record<string, { running: number }>).some((owner) => owner.running >= 1);
          if (!running) await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.ok(running, 'the busy component call holds a runner slot');
        process.kill(runnerPid, 'SIGKILL');
        const lost = await pending;
        assert.equal(lost.status, 200, JSON.stringify(lost.body));
        assert.equal(lost.body.kind, 'http-component');
        assert.equal(lost.body.outcome, 'runner_lost', JSON.stringify(lost.body));
        assert.equal((await call(t.url, 'GET', '/healthz')).status, 200, 'the API (this test process) carries on');
      });
    });
  }
});
