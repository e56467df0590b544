/**
 * Local runner processes get a minimal environment of their own, not the
 * API's (runner/local.ts, runnerEnvironment): tenant modules run in those
 * processes, so the database URL and the S3 keys the API holds must not be
 * there. Checked on a real Kiln: the runner's /proc/<pid>/environ (what it
 * was started with) holds none of the API's secrets and only the variables
 * Kiln passes on purpose, and the runner still runs calls.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { runnerEnvironment } from '../../src/testbed/runner/local.ts';
import { call, startTestKiln } from '../support/kiln.ts';
import type { TestKiln } from '../support/kiln.ts';
import { publish } from './support.ts';
import type { Json } from './support.ts';
import { okFunction } from './wat.ts';

/** The only names a local runner may be started with (runner/local.ts). */
const PASSED = new Set(['TMPDIR', 'NODE_EXTRA_CA_CERTS', 'TSX_TSCONFIG_PATH', 'TSX_DISABLE_CACHE']);

/** Secret-looking values the API process holds in its environment, as a deployment would. */
const SECRETS = {
  DATABASE_URL: `postgres://kiln:runner-env-secret-${process.pid}@db.internal:5432/kiln`,
  S3_SECRET_ACCESS_KEY: `runner-env-s3-secret-${process.pid}`,
  KILN_ADMIN_TOKEN: `runner-env-admin-${process.pid}`,
};

const OK_FUNCTION = okFunction();

describe('runnerEnvironment', () => {
  it('keeps TMPDIR and the listed variables, drops everything else', () => {
    const env = runnerEnvironment({ ...SECRETS, PATH: '/usr/bin', HOME: '/root', NODE_OPTIONS: '--require /tmp/x.js', NODE_EXTRA_CA_CERTS: '/etc/kiln/ca.pem', LANG: 'C.UTF-8' }, '/var/tmp/kiln');
    assert.deepEqual(env, { TMPDIR: '/var/tmp/kiln', NODE_EXTRA_CA_CERTS: '/etc/kiln/ca.pem' });
  });
});

// The runner's environment does not depend on the storage backend: the embedded flavour is enough here.
describe('a local runner started by the API', { timeout: 240_000 }, () => {
  let t: TestKiln;
  const saved = Object.fromEntries(Object.keys(SECRETS).map((name) => [name, process.env[name]]));

  before(async () => {
    // Set in this process (the API's) before the runner is spawned; the test Kiln's own config ignores them.
    Object.assign(process.env, SECRETS);
    t = await startTestKiln({ flavour: 'embedded', env: { KILN_TESTBED_RUNNERS: '1', KILN_TESTBED_WORKERS: '1' } });
  });

  after(async () => {
    await t?.close();
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('runs calls, and was started without the API’s secrets: only the variables Kiln passes', async () => {
    const id = await publish(t, OK_FUNCTION, { kind: 'wasi-command' });
    const result = await call<Json>(t.url, 'POST', `/v1/versions/${id}/invoke`, { token: t.ownerToken, json: {} });
    assert.equal(result.status, 200, JSON.stringify(result.body));
    assert.equal(result.body.outcome, 'ok', JSON.stringify(result.body));
    assert.equal(result.body.stdout.text, 'ok');

    const listing = await call<Json>(t.url, 'GET', '/v1/testbed/runners', { token: t.adminToken });
    const pids = (listing.body.runners as Json[]).map((runner) => runner.pid as number);
    assert.equal(pids.length, 1, JSON.stringify(listing.body));
    for (const pid of pids) {
      assert.notEqual(pid, process.pid, 'the runner is another process');
      const environ = await readFile(`/proc/${pid}/environ`, 'utf8');
      for (const [name, secret] of Object.entries(SECRETS)) assert.ok(!environ.includes(secret), `${name} reached the runner`);
      const names = environ.split('\0').filter(Boolean).map((entry) => entry.slice(0, entry.indexOf('=')));
      assert.ok(names.includes('TMPDIR'), names.join(' '));
      for (const name of names) assert.ok(PASSED.has(name), `the runner was started with ${name}`);
    }
  });
});
