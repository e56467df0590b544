import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { s3Skip, s3TestSettings } from '../support/backends.ts';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { startTcpRelay, type TcpRelay } from '../support/tcp-relay.ts';
import { wasiCommandModule } from '../support/wasm.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- test-side JSON access

const run = promisify(execFile);
const scripts = path.resolve(import.meta.dirname, '../../scripts/services');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Plays a worker through one job so a build succeeds. */
async function succeedNextJob(t: TestKiln): Promise<Json> {
  const claimed = await call<Json>(t.url, 'POST', '/internal/v1/jobs/claim', { token: t.workerToken, json: { workerId: 'w', waitMs: 5_000 } });
  assert.equal(claimed.status, 200, JSON.stringify(claimed.body));
  const job = claimed.body.job as Json;
  const headers = { 'x-kiln-lease': job.leaseToken };
  await call(t.url, 'PUT', `/internal/v1/jobs/${job.id}/artifacts/original`, { token: t.workerToken, body: new Uint8Array(wasiCommandModule()), headers: { ...headers, 'content-type': 'application/wasm' } });
  const result = await call<Json>(t.url, 'POST', `/internal/v1/jobs/${job.id}/result`, { token: t.workerToken, json: { outcome: 'succeeded', stages: [] }, headers });
  return result.body.build as Json;
}

const postgresSkip = process.getuid?.() === 0 ? false : 'needs root to start a private PostgreSQL server';

describe('a PostgreSQL restart loses nothing', { skip: postgresSkip, timeout: 120_000 }, () => {
  let state: string;
  let port: string;
  let t: TestKiln;

  before(async () => {
    state = await mkdtemp(path.join(os.tmpdir(), 'kiln-pg-restart-'));
    await chmod(state, 0o755); // the postgres user must reach its data dir
    const { stdout } = await run('bash', [path.join(scripts, 'start-postgres.sh'), path.join(state, 'pg')], { env: { ...process.env, KILN_PG_FIRST_PORT: '16432' } });
    const url = stdout.trim().replace(/^DATABASE_URL=/, '');
    port = new URL(url).port;
    t = await startTestKiln({ env: { DATABASE_URL: url } });
  });
  after(async () => {
    await t?.close();
    await run('bash', [path.join(scripts, 'stop-postgres.sh'), path.join(state, 'pg')]).catch(() => undefined);
    await rm(state, { recursive: true, force: true });
  });

  it('answers 503 while the database is down and carries on after the restart', async () => {
    const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 'survivor' } });
    const upload = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, await tinyCProject()) });
    assert.equal(upload.status, 202);
    const pgBin = '/usr/lib/postgresql/15/bin';
    await run('runuser', ['-u', 'postgres', '--', `${pgBin}/pg_ctl`, 'stop', '-m', 'fast', '-D', path.join(state, 'pg', 'data')]);
    const down = await call<Json>(t.url, 'GET', `/v1/builds/${upload.body.build.id}`, { token: t.ownerToken });
    assert.equal(down.status, 503, JSON.stringify(down.body));
    assert.equal(down.body.error.code, 'database_unavailable');
    assert.equal((await call(t.url, 'GET', '/readyz')).status, 503);
    // Same data directory, same port: a restart, not a new server.
    await run('runuser', ['-u', 'postgres', '--', `${pgBin}/pg_ctl`, 'start', '-w', '-D', path.join(state, 'pg', 'data'), '-o', `-p ${port}`, '-l', path.join(state, 'pg', 'restart.log')], { timeout: 30_000 });
    let lastReadiness: unknown;
    await until('readiness', async () => {
      const ready = await call(t.url, 'GET', '/readyz');
      lastReadiness = ready.body;
      return ready.status === 200 ? true : undefined;
    }).catch((error: unknown) => {
      throw new Error(`${String(error)}: ${JSON.stringify(lastReadiness)}`);
    });
    const build = await succeedNextJob(t);
    assert.equal(build.id, upload.body.build.id, 'the build queued before the restart is still there');
    assert.equal(build.state, 'succeeded');
    const after = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.1' }, await tinyCProject()) });
    assert.equal(after.status, 202);
  });
});

describe('a failing S3 loses nothing and leaves no half-made version', { skip: s3Skip(), timeout: 120_000 }, () => {
  let t: TestKiln;
  let link: TcpRelay;

  before(async () => {
    const s3 = s3TestSettings();
    const endpoint = new URL(s3.endpoint);
    link = await startTcpRelay({ host: endpoint.hostname, port: Number(endpoint.port) });
    t = await startTestKiln({
      env: { S3_ENDPOINT: `http://127.0.0.1:${link.port}`, S3_BUCKET: s3.bucket, S3_REGION: s3.region, S3_ACCESS_KEY_ID: s3.accessKeyId, S3_SECRET_ACCESS_KEY: s3.secretAccessKey },
    });
  });
  after(async () => {
    await t?.close();
    await link?.close();
  });

  it('answers 503 to uploads and downloads while S3 fails, and works again after', async () => {
    const app = await call<Json>(t.url, 'POST', '/v1/applications', { token: t.ownerToken, json: { name: 's3-outage' } });
    const first = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '1.0.0' }, await tinyCProject()) });
    assert.equal(first.status, 202);
    const built = await succeedNextJob(t);
    assert.equal(built.state, 'succeeded');

    link.cut();
    const refused = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '2.0.0' }, await tinyCProject()) });
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    const download = await call<Json>(t.url, 'GET', `/v1/versions/${first.body.version.id}/artifact`, { token: t.ownerToken });
    assert.equal(download.status, 503);
    const versions = await call<Json>(t.url, 'GET', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken });
    assert.deepEqual(versions.body.items.map((version: Json) => version.version), ['1.0.0'], 'the refused upload left no version');

    link.restore();
    const again = await call<Json>(t.url, 'POST', `/v1/applications/${app.body.id}/versions`, { token: t.ownerToken, body: versionForm({ version: '2.0.0' }, await tinyCProject()) });
    assert.equal(again.status, 202, JSON.stringify(again.body));
    const artifact = await call(t.url, 'GET', `/v1/versions/${first.body.version.id}/artifact`, { token: t.ownerToken });
    assert.equal(artifact.status, 200);
  });
});
