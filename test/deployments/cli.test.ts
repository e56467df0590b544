import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { filterModule, sha256, startHarness, type Harness, type Json } from './helpers.ts';

const KILN_BIN = new URL('../../bin/kiln', import.meta.url).pathname;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `./bin/kiln` as a person runs it, with nothing from this machine's environment pointing it elsewhere. */
function runKiln(args: string[], env: Record<string, string>, cwd: string): Promise<CliResult> {
  const clean: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined && !key.startsWith('KILN_') && key !== 'XDG_CONFIG_HOME') clean[key] = value;
  return new Promise((resolve, reject) => {
    const child = spawn(KILN_BIN, args, { cwd, env: { ...clean, HOME: cwd, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('kiln promote, rollback, deployments and edge sync (CLI)', () => {
  let h: Harness;
  let home: string;

  before(async () => {
    h = await startHarness();
    home = await mkdtemp(path.join(os.tmpdir(), 'kiln-deploy-cli-'));
  });
  after(async () => {
    await h.close();
    await rm(home, { recursive: true, force: true });
  });

  const kiln = (args: string[], token = h.t.ownerToken) => runKiln(args, { KILN_URL: h.t.url, KILN_TOKEN: token }, home);
  const kilnJson = async (args: string[], token?: string): Promise<Json> => {
    const result = await kiln([...args, '--json'], token);
    assert.equal(result.code, 0, `kiln ${args.join(' ')}: ${result.stderr}`);
    return JSON.parse(result.stdout) as Json;
  };

  it('promotes, lists, rolls back and syncs, end to end', async () => {
    const app = await h.createApp('cli-filter');
    const v1Module = filterModule('cli-1');
    const v2Module = filterModule('cli-2');
    await h.succeededVersion(app.id, '1.0.0', v1Module);
    await h.succeededVersion(app.id, '2.0.0', v2Module);

    const first = await kilnJson(['promote', 'cli-filter@1.0.0', '--env', 'production']);
    assert.equal(first.changed, true);
    assert.equal(first.deployment.artifact.sha256, sha256(v1Module));
    const second = await kiln(['promote', 'cli-filter@2.0.0', '--env', 'production']);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /Promoted cli-filter 2\.0\.0 to production \(was 1\.0\.0\)/);
    const unknownEnv = await kiln(['promote', 'cli-filter@2.0.0', '--env', 'prodution']);
    assert.equal(unknownEnv.code, 1);
    assert.match(unknownEnv.stderr, /not configured; use one of staging, production/);
    assert.notEqual((await kiln(['promote', 'cli-filter@2.0.0'])).code, 0, '--env is required');

    const history = await kilnJson(['deployments', 'cli-filter']);
    assert.deepEqual(history.items.map((item: Json) => [item.version, item.active]), [['2.0.0', true], ['1.0.0', false]]);
    assert.equal(history.active.production.version, '2.0.0');
    const table = await kiln(['deployments', 'cli-filter']);
    assert.match(table.stdout, /production\t2\.0\.0\tactive/);

    const edge = await h.edgeToken();
    const dir = path.join(home, 'edge', 'production');
    const synced = await kilnJson(['edge', 'sync', '--environment', 'production', '--dir', dir], edge);
    assert.deepEqual(synced.written, ['local.cli-filter.wasm']);
    assert.deepEqual(await readFile(path.join(dir, 'local.cli-filter.wasm')), v2Module);

    const rolledBack = await kilnJson(['rollback', 'cli-filter', '--env', 'production']);
    assert.equal(rolledBack.deployment.version, '1.0.0');
    assert.equal(rolledBack.previous.version, '2.0.0');
    const human = await kiln(['edge', 'sync', '-e', 'production', '--dir', dir], edge);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stderr, /production: 1 written \(local\.cli-filter\.wasm\)/);
    assert.deepEqual(await readFile(path.join(dir, 'local.cli-filter.wasm')), v1Module);
    const unchanged = await kiln(['edge', 'sync', '-e', 'production', '--dir', dir], edge);
    assert.match(unchanged.stderr, /production: unchanged/);

    const refused = await kiln(['edge', 'sync', '-e', 'production', '--dir', dir, '--retries', '0']);
    assert.equal(refused.code, 1, 'an owner token is not an edge token');
    assert.match(refused.stderr, /edge token/);
    const noHistory = await kiln(['rollback', (await h.createApp('lonely')).name, '--env', 'production']);
    assert.equal(noHistory.code, 1);
    assert.match(noHistory.stderr, /no earlier version/);
  });

  it('lets the admin create, list and revoke edge tokens', async () => {
    const created = await kilnJson(['edge', 'token', 'create', 'site-a'], h.t.adminToken);
    assert.match(created.token, /^kiln_edg_/);
    assert.equal(created.info.allOwners, true);
    const manifest = await kilnJson(['edge', 'manifest', '-e', 'staging'], created.token);
    assert.equal(manifest.environment, 'staging');
    const listed = await kilnJson(['edge', 'token', 'list'], h.t.adminToken);
    assert.ok(listed.some((info: Json) => info.id === created.info.id));
    assert.equal((await kiln(['edge', 'token', 'revoke', created.info.id], h.t.adminToken)).code, 0);
    assert.equal((await kiln(['edge', 'manifest', '-e', 'staging'], created.token)).code, 1);
    assert.equal((await kiln(['edge', 'token', 'create', 'nope'])).code, 1, 'owner tokens cannot make edge tokens');
  });
});
