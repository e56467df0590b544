/**
 * Helpers for the test bed suites: building real modules (only through
 * runBuild in the bubblewrap sandbox — never compiling on the host), and
 * publishing a module as a version's successful build through the worker
 * protocol of a running test Kiln.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { access, chmod, cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSandbox, createWorkDir, DEFAULT_LIMITS } from '../../src/sandbox/index.ts';
import type { Sandbox } from '../../src/sandbox/sandbox.ts';
import type { AppKind } from '../../src/languages/language.ts';
import { runBuild } from '../../src/worker/build-job.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call } from '../support/kiln.ts';
import type { TestKiln } from '../support/kiln.ts';

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

export const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;
export const FIXTURES = new URL('./fixtures/', import.meta.url).pathname;
/** The raw Proxy-Wasm ABI declarations of the C fixtures, kept once (abi-filter's) and added to the others' uploads. */
export const FIXTURE_ABI_H = { 'src/abi.h': `${FIXTURES}abi-filter/src/abi.h` };

/** Why the sandbox cannot build here (then build-dependent tests skip), or false. */
export async function sandboxSkip(): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'building in the sandbox needs root';
  try {
    await access('/usr/bin/bwrap');
    await access('/usr/bin/clang');
    return false;
  } catch {
    return 'bubblewrap or clang is not installed';
  }
}

export class SandboxBuilder {
  private sandbox: Sandbox | undefined;
  private scratch: string | undefined;

  /**
   * Builds a directory (copied as the upload) and returns the module.
   * `shared` adds files kept once for several fixtures: upload path → file on disk.
   */
  async build(sourceDir: string, kind?: AppKind, shared: Record<string, string> = {}): Promise<Uint8Array<ArrayBuffer>> {
    this.sandbox ??= createSandbox('bubblewrap');
    if (!this.scratch) {
      this.scratch = await mkdtemp(join(tmpdir(), 'kiln-testbed-build-'));
      // bwrap resolves the work dir's path, so the sandbox uid needs search permission on its parents.
      await chmod(this.scratch, 0o755);
    }
    const workDir = await createWorkDir(this.scratch, DEFAULT_LIMITS.diskBytes);
    try {
      await cp(sourceDir, join(workDir.path, 'src'), { recursive: true, filter: (path) => !/\/(target|node_modules)$/.test(path) });
      for (const [uploadPath, file] of Object.entries(shared)) await cp(file, join(workDir.path, 'src', uploadPath));
      const log: Buffer[] = [];
      const artifactPath = join(this.scratch, `${randomUUID()}.wasm`);
      const outcome = await runBuild({ jobDir: workDir.path, sandbox: this.sandbox, kind, onLog: (chunk) => log.push(chunk), artifactPath });
      assert.equal(outcome.outcome, 'succeeded', `${outcome.reason ?? ''}\n${Buffer.concat(log).toString('utf8')}`);
      return new Uint8Array(await readFile(artifactPath));
    } finally {
      await workDir.dispose();
    }
  }

  async dispose(): Promise<void> {
    if (this.scratch) await rm(this.scratch, { recursive: true, force: true });
  }
}

/**
 * Creates an application and a version, then plays the worker: claims the
 * build, uploads `module` as its artifact and reports success, so the
 * version runs `module` on the test bed (or, without a module, reports the
 * build failed). Returns the version id.
 */
export async function publish(t: TestKiln, module: Uint8Array | undefined, metadata: { kind: AppKind; config?: string; name?: string }): Promise<string> {
  const owner = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.ownerToken, ...options });
  const worker = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.workerToken, ...options });
  const app = await owner('POST', '/v1/applications', { json: { name: metadata.name ?? `tb-${randomUUID().slice(0, 8)}` } });
  assert.equal(app.status, 201, JSON.stringify(app.body));
  const upload = await owner('POST', `/v1/applications/${app.body.id}/versions`, {
    body: versionForm({ version: '1.0.0', kind: metadata.kind, config: metadata.config ?? '' }, await tinyCProject()),
  });
  assert.equal(upload.status, 202, JSON.stringify(upload.body));
  const claimed = await worker('POST', '/internal/v1/jobs/claim', { json: { workerId: 'testbed-test', waitMs: 5_000 } });
  assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
  const job = claimed.body.job as Json;
  assert.equal(job.buildId, upload.body.build.id, 'the claimed job is the one just queued');
  const lease = { 'x-kiln-lease': job.leaseToken as string };
  if (!module) {
    const failed = await worker('POST', `/internal/v1/jobs/${job.id}/result`, { json: { outcome: 'failed', reason: 'left unbuilt by the test', stages: [] }, headers: lease });
    assert.equal(failed.body.build?.state, 'failed', JSON.stringify(failed.body));
    return upload.body.version.id as string;
  }
  const put = await worker('PUT', `/internal/v1/jobs/${job.id}/artifacts/original`, { body: new Uint8Array(module), headers: { ...lease, 'content-type': 'application/wasm' } });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  const result = await worker('POST', `/internal/v1/jobs/${job.id}/result`, { json: { outcome: 'succeeded', stages: [] }, headers: lease });
  assert.equal(result.body.build?.state, 'succeeded', JSON.stringify(result.body));
  return upload.body.version.id as string;
}
