/**
 * `kiln invoke APP` without a version: the newest version with a succeeded
 * build runs, and the CLI says which one it chose. Builds are finished by a
 * scripted worker (no sandbox needed).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { cliPlace, drainJobs, playWorker, runnableWasiCommand, type CliPlace, type Json } from './helpers.ts';

let t: TestKiln;
let cli: CliPlace;
const api = (method: string, route: string, options: Parameters<typeof call>[3] = {}) => call<Json>(t.url, method, route, { token: t.ownerToken, ...options });

before(async () => {
  t = await startTestKiln();
  cli = await cliPlace(t);
});
after(async () => {
  await cli?.cleanup();
  await t?.close();
});

async function upload(appId: string, version: string): Promise<Json> {
  const uploaded = await api('POST', `/v1/applications/${appId}/versions`, { body: versionForm({ version, kind: 'wasi-command' }, await tinyCProject()) });
  assert.equal(uploaded.status, 202, JSON.stringify(uploaded.body));
  return uploaded.body.version as Json;
}

describe('kiln invoke APP (no version)', () => {
  it('runs the newest version whose build succeeded, skipping a newer failed one, and says which', async () => {
    await drainJobs(t);
    const name = `latest-${randomUUID().slice(0, 8)}`;
    const app = (await api('POST', '/v1/applications', { json: { name } })).body;

    const none = await cli.run(['invoke', name, '--input', 'x']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, new RegExp(`application ${name} has no versions yet`));

    await upload(app.id, '1.0.0');
    await playWorker(t, { outcome: 'succeeded', module: runnableWasiCommand() });
    await upload(app.id, '1.1.0');
    await playWorker(t, { outcome: 'succeeded', module: runnableWasiCommand() });
    await upload(app.id, '1.2.0');
    await playWorker(t, { outcome: 'failed', reason: 'compile error' });

    const result = await cli.run(['invoke', name, '--input', 'hello']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`running ${name}@1\\.1\\.0, the newest version with a succeeded build`));
    assert.match(result.stderr, /── ok · exit 0/);

    const json = await cli.run(['invoke', name, '--json']);
    assert.equal(json.code, 0, json.stderr);
    assert.equal((JSON.parse(json.stdout) as Json).outcome, 'ok', 'stdout keeps the one JSON document');
    assert.match(json.stderr, /@1\.1\.0/, 'the choice is still said, on stderr');
  });

  it('refuses an application with only failed builds, naming how to pick a version', async () => {
    await drainJobs(t);
    const name = `failing-${randomUUID().slice(0, 8)}`;
    const app = (await api('POST', '/v1/applications', { json: { name } })).body;
    await upload(app.id, '0.1.0');
    await playWorker(t, { outcome: 'failed', reason: 'compile error' });
    const result = await cli.run(['invoke', name]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`${name} has no succeeded build among its newest 1 versions; name one with ${name}@VERSION`));
  });

  it('an unknown application is a clear error, not a version lookup', async () => {
    const result = await cli.run(['invoke', 'no-such-app']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /application "no-such-app" does not exist/);
  });
});
