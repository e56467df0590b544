/**
 * A real Kiln API, plus a scripted worker that makes a build succeed with a
 * module of the test's choice, so each version has distinct, known bytes.
 */
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { moduleWithExports } from '../support/wasm.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test-side JSON access
export type Json = Record<string, any>;

export const sha256 = (bytes: Buffer | Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** A valid proxy-wasm filter whose bytes differ per `tag`. */
export const filterModule = (tag: string): Buffer =>
  moduleWithExports(['proxy_abi_version_0_2_1', 'proxy_on_memory_allocate', 'proxy_on_context_create', '_initialize', `tag_${tag.replace(/[^a-z0-9_]/gi, '_')}`]);

export interface Harness {
  t: TestKiln;
  api: (method: string, route: string, options?: Parameters<typeof call>[3]) => ReturnType<typeof call<Json>>;
  as: (token: string, method: string, route: string, options?: Parameters<typeof call>[3]) => ReturnType<typeof call<Json>>;
  createApp(name?: string, token?: string): Promise<Json>;
  /** Uploads a version and plays the worker: the build succeeds with `module`. */
  succeededVersion(appId: string, version: string, module: Buffer, options?: { token?: string; config?: string }): Promise<{ version: Json; build: Json }>;
  /** Plays the worker for the oldest queued job: it succeeds with `module` (or fails without one). */
  finishNextJob(module: Buffer | undefined): Promise<void>;
  /** Uploads a version whose build fails (the user's code did not compile). */
  failedVersion(appId: string, version: string): Promise<Json>;
  promote(appId: string, versionId: string, environment: string, token?: string): Promise<Json>;
  edgeToken(owners?: string[]): Promise<string>;
  newOwner(name: string): Promise<{ id: string; token: string }>;
  close(): Promise<void>;
}

export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  const t = await startTestKiln({ env });
  const as = (token: string, method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token, ...options });
  const api = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => as(t.ownerToken, method, route, options);
  const worker = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => as(t.workerToken, method, route, options);

  async function finishNextJob(module: Buffer | undefined): Promise<void> {
    const claimed = await worker('POST', '/internal/v1/jobs/claim', { json: { workerId: 'deployments-test', waitMs: 5_000 } });
    assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
    const job = claimed.body.job as Json;
    const leased = (method: string, route: string, options: Parameters<typeof call>[3] = {}) =>
      worker(method, `/internal/v1/jobs/${job.id}${route}`, { ...options, headers: { 'x-kiln-lease': job.leaseToken, ...options.headers } });
    if (!module) {
      const failed = await leased('POST', '/result', { json: { outcome: 'failed', reason: 'does not compile', stages: [] } });
      assert.equal(failed.body.build?.state, 'failed', JSON.stringify(failed.body));
      return;
    }
    const put = await leased('PUT', '/artifacts/original', { body: new Uint8Array(module), headers: { 'content-type': 'application/wasm' } });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const result = await leased('POST', '/result', { json: { outcome: 'succeeded', language: 'c', stages: [] } });
    assert.equal(result.body.build?.state, 'succeeded', JSON.stringify(result.body));
  }

  return {
    t,
    api,
    as,
    finishNextJob,
    async createApp(name = `app-${randomUUID().slice(0, 8)}`, token = t.ownerToken) {
      const created = await as(token, 'POST', '/v1/applications', { json: { name } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      return created.body;
    },
    async succeededVersion(appId, version, module, options = {}) {
      const uploaded = await as(options.token ?? t.ownerToken, 'POST', `/v1/applications/${appId}/versions`, {
        body: versionForm({ version, kind: 'proxy-wasm', phases: ['request_headers'], config: options.config ?? `{"v":"${version}"}` }, await tinyCProject()),
      });
      assert.equal(uploaded.status, 202, JSON.stringify(uploaded.body));
      await finishNextJob(module);
      return { version: uploaded.body.version, build: uploaded.body.build };
    },
    async failedVersion(appId, version) {
      const uploaded = await api('POST', `/v1/applications/${appId}/versions`, { body: versionForm({ version }, await tinyCProject()) });
      assert.equal(uploaded.status, 202, JSON.stringify(uploaded.body));
      await finishNextJob(undefined);
      return uploaded.body.version;
    },
    async promote(appId, versionId, environment, token = t.ownerToken) {
      const promoted = await as(token, 'POST', `/v1/applications/${appId}/deployments`, { json: { versionId, environment } });
      assert.ok(promoted.status === 201 || promoted.status === 200, JSON.stringify(promoted.body));
      return promoted.body;
    },
    async edgeToken(owners) {
      const created = await as(t.adminToken, 'POST', '/v1/edge-tokens', { json: { name: `edge-${randomUUID().slice(0, 6)}`, owners } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      return created.body.token as string;
    },
    async newOwner(name) {
      const created = await as(t.adminToken, 'POST', '/v1/owners', { json: { name } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      return { id: created.body.owner.id as string, token: created.body.token as string };
    },
    close: () => t.close(),
  };
}
