/**
 * `./bin/kiln` end to end against a real API (startTestKiln). Builds are
 * finished by a scripted worker over the internal protocol, so these tests
 * need no sandbox; test/cli/deploy.test.ts runs real builds.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tinyCProject, versionForm } from '../support/archives.ts';
import { call, startTestKiln, type TestKiln } from '../support/kiln.ts';
import { wasiCommandModule } from '../support/wasm.ts';
import { cliPlace, drainJobs, KILN_BIN, playWorker, runKiln, runnableWasiCommand, type CliPlace, type Json } from './helpers.ts';

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

/** An application with one uploaded version (its build queued). */
async function appWithVersion(name = `app-${randomUUID().slice(0, 8)}`, version = '1.0.0') {
  const app = (await api('POST', '/v1/applications', { json: { name } })).body;
  const uploaded = await api('POST', `/v1/applications/${app.id}/versions`, { body: versionForm({ version, kind: 'wasi-command' }, await tinyCProject()) });
  assert.equal(uploaded.status, 202, JSON.stringify(uploaded.body));
  return { app, version: uploaded.body.version as Json, build: uploaded.body.build as Json };
}

const scriptMissing = () => (spawnSync('script', ['--version']).status === 0 ? false : 'script(1) is not installed');

/** A port nothing listens on (one just released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function projectDir(files: Record<string, string>): Promise<string> {
  const dir = path.join(cli.home, `project-${randomUUID().slice(0, 8)}`);
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  return dir;
}

describe('kiln help', () => {
  it('documents every command and its flags, with examples', async () => {
    const top = await runKiln(['--help']);
    assert.equal(top.code, 0);
    for (const command of ['serve', 'worker', 'login', 'deploy', 'apps', 'versions', 'builds', 'logs', 'cancel', 'rebuild', 'download', 'invoke']) assert.match(top.stdout, new RegExp(`\\n  ${command}\\b`), command);
    const leaves = [
      ['deploy'],
      ['apps', 'create'],
      ['apps', 'list'],
      ['apps', 'show'],
      ['apps', 'update'],
      ['apps', 'delete'],
      ['versions', 'list'],
      ['versions', 'update'],
      ['builds', 'list'],
      ['builds', 'show'],
      ['logs'],
      ['cancel'],
      ['rebuild'],
      ['download'],
      ['invoke'],
      ['login'],
    ];
    const helps = await Promise.all(leaves.map((leaf) => runKiln([...leaf, '--help'])));
    for (const [index, leaf] of leaves.entries()) {
      const help = helps[index] ?? assert.fail(leaf.join(' '));
      assert.equal(help.code, 0, leaf.join(' '));
      assert.match(help.stdout, /Examples:\n {2}kiln /, `${leaf.join(' ')} has examples`);
      if (leaf[0] !== 'login') assert.match(help.stdout, /--json/, `${leaf.join(' ')} takes --json`);
    }
    assert.match((await runKiln(['deploy', '--help'])).stdout, /--dry-run[\s\S]*\.gitignore[\s\S]*kiln\.toml/);
  });

  it('rejects unknown commands and bad flag values with usage help', async () => {
    const unknown = await cli.run(['deplo']);
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /unknown command 'deplo'[\s\S]*Did you mean deploy/);
    const badState = await cli.run(['builds', 'list', '--state', 'exploded']);
    assert.notEqual(badState.code, 0);
    assert.match(badState.stderr, /expected one of queued, running/);
  });
});

describe('helpful errors', () => {
  it('names the URL it could not reach', async () => {
    const port = await closedPort();
    const result = await cli.run(['apps', 'list'], { env: { KILN_URL: `http://127.0.0.1:${port}` } });
    assert.equal(result.code, 1);
    assert.match(result.stderr, new RegExp(`cannot reach Kiln at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
    assert.match(result.stderr, /kiln serve|KILN_URL|kiln login/);
    assert.equal(result.stdout, '');
  });

  it('says how to log in after a 401, naming where the bad token came from', async () => {
    const bad = await cli.run(['apps', 'list'], { env: { KILN_TOKEN: 'kiln_own_wrong' } });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`${t.url.replace(/[.]/g, '\\.')} refused the token from KILN_TOKEN`));
    assert.match(bad.stderr, /kiln login/);
    const none = await cli.run(['apps', 'list'], { env: { KILN_TOKEN: undefined } });
    assert.equal(none.code, 1);
    assert.match(none.stderr, /no token for .*kiln login.*\.kiln\/local-token/s);
  });

  it('names the missing id after a 404', async () => {
    const id = randomUUID();
    const build = await cli.run(['builds', 'show', id]);
    assert.equal(build.code, 1);
    assert.match(build.stderr, new RegExp(`build ${id} does not exist`));
    const app = await cli.run(['apps', 'show', 'no-such-app']);
    assert.match(app.stderr, /application "no-such-app" does not exist.*kiln apps list/);
    const version = await cli.run(['versions', 'show', 'no-such-app@1.0.0']);
    assert.match(version.stderr, /application "no-such-app" does not exist/);
  });
});

describe('kiln login and local discovery', () => {
  it('stores a checked URL and token with mode 0600, and refuses a bad token', async () => {
    const place = await cliPlace(undefined);
    try {
      const refused = await place.run(['login', t.url, '--token', 'kiln_own_nope']);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /refused this token.*nothing was saved/);
      const login = await place.run(['login', t.url, '--token-stdin'], { input: `${t.ownerToken}\n` });
      assert.equal(login.code, 0, login.stderr);
      const file = path.join(place.home, '.config', 'kiln', 'config.json');
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { url: t.url, token: t.ownerToken });
      const listed = await place.run(['apps', 'list', '--json']);
      assert.equal(listed.code, 0, listed.stderr);
      assert.ok(Array.isArray(JSON.parse(listed.stdout)));
      const logout = await place.run(['logout']);
      assert.equal(logout.code, 0);
      assert.match((await place.run(['apps', 'list'])).stderr, /cannot reach Kiln at http:\/\/127\.0\.0\.1:8080|no token/);
      const noToken = await place.run(['login', t.url]);
      assert.match(noToken.stderr, /no token given: pass --token/);
    } finally {
      await place.cleanup();
    }
  });

  it('finds .kiln/local-token in a parent directory without any configuration', async () => {
    const place = await cliPlace(undefined, { KILN_URL: t.url });
    try {
      await mkdir(path.join(place.home, '.kiln'), { recursive: true });
      await writeFile(path.join(place.home, '.kiln', 'local-token'), `${t.ownerToken}\n`);
      const deep = path.join(place.home, 'projects', 'hello');
      await mkdir(deep, { recursive: true });
      const listed = await place.run(['apps', 'list', '--json'], { cwd: deep });
      assert.equal(listed.code, 0, listed.stderr);
    } finally {
      await place.cleanup();
    }
  });
});

describe('kiln apps', () => {
  it('creates, lists, shows, updates and deletes, with --json matching the API', async () => {
    const created = await cli.json(['apps', 'create', 'cli-crud', '--notes', 'first']);
    assert.deepEqual(created, (await api('GET', `/v1/applications/${created.id}`)).body);
    const listed = await cli.json<Json[]>(['apps', 'list']);
    assert.ok(listed.some((app) => app.id === created.id));
    assert.deepEqual(await cli.json(['apps', 'show', 'cli-crud']), created, 'by name');
    assert.deepEqual(await cli.json(['apps', 'show', created.id]), created, 'by id');
    const updated = await cli.json(['apps', 'update', 'cli-crud', '--notes', 'second']);
    assert.equal(updated.notes, 'second');
    const plain = await cli.run(['apps', 'list']);
    assert.match(plain.stdout, new RegExp(`^${created.id}\tcli-crud\t`, 'm'), 'tab-separated without a TTY');
    const duplicate = await cli.run(['apps', 'create', 'cli-crud']);
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /already exists/);
    const refused = await cli.run(['apps', 'delete', 'cli-crud']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /pass --yes/);
    assert.equal((await api('GET', `/v1/applications/${created.id}`)).status, 200, 'nothing deleted without --yes');
    const deleted = await cli.json(['apps', 'delete', 'cli-crud', '--yes']);
    assert.equal(deleted.deleted, true);
    assert.equal((await api('GET', `/v1/applications/${created.id}`)).status, 404);
  });
});

describe('kiln versions, builds, logs, cancel, rebuild, download', () => {
  it('lists, shows, updates and deletes versions by id or app@version', async () => {
    await drainJobs(t);
    const { app, version } = await appWithVersion();
    const listed = await cli.json<Json[]>(['versions', 'list', app.name]);
    assert.deepEqual(listed, [(await api('GET', `/v1/versions/${version.id}`)).body]);
    assert.deepEqual(await cli.json(['versions', 'show', `${app.name}@1.0.0`]), listed[0]);
    const updated = await cli.json(['versions', 'update', version.id, '--notes', 'canary', '--phases', 'request_headers,response_headers', '--config', '{"x":1}']);
    assert.equal(updated.notes, 'canary');
    assert.deepEqual(updated.phases, ['request_headers', 'response_headers']);
    assert.equal(updated.config, '{"x":1}');
    const badPhase = await cli.run(['versions', 'update', version.id, '--phases', 'on_tuesday']);
    assert.match(badPhase.stderr, /"on_tuesday" is not a phase/);
    const renamed = await cli.json(['versions', 'update', version.id, '--version', '1.0.1']);
    assert.equal(renamed.version, '1.0.1');
    const shown = await cli.run(['versions', 'show', `${app.name}@1.0.1`]);
    assert.match(shown.stdout, /version\s+1\.0\.1/);
    assert.match(shown.stdout, /Builds:/);
    await cli.json(['versions', 'delete', `${app.name}@1.0.1`, '--yes']);
    assert.equal((await api('GET', `/v1/versions/${version.id}`)).status, 404);
  });

  it('lists and shows builds with filters, prints and follows logs, downloads the verified artifact', async () => {
    await drainJobs(t);
    const { app, version, build } = await appWithVersion();
    const follow = cli.run(['logs', build.id, '--follow', '--exit-status']);
    const module = wasiCommandModule();
    await playWorker(t, { outcome: 'succeeded', log: ['compiling main.c\n', 'linking…\n', 'done\n'], pauseMs: 150, module });
    const followed = await follow;
    assert.equal(followed.code, 0, followed.stderr);
    assert.match(followed.stdout, /compiling main\.c\nlinking…\ndone\n/);
    assert.match(followed.stderr, /build #1 succeeded/);

    const builds = await cli.json<Json[]>(['builds', 'list', '--app', app.name]);
    assert.deepEqual(builds.map((item) => item.id), [build.id]);
    assert.deepEqual(await cli.json(['builds', 'show', build.id]), (await api('GET', `/v1/builds/${build.id}`)).body);
    assert.equal((await cli.json<Json[]>(['builds', 'list', '--version', version.id, '--state', 'failed'])).length, 0);
    const shown = await cli.run(['builds', 'show', build.id]);
    assert.match(shown.stdout, /state\s+succeeded/);
    assert.match(shown.stdout, new RegExp(`original\\s+\\S+ B\\s+sha256 ${createHash('sha256').update(module).digest('hex')}`));

    const log = await cli.run(['logs', build.id]);
    assert.match(log.stdout, /compiling main\.c\nlinking…\ndone\n/);
    const logJson = await cli.json(['logs', build.id]);
    assert.equal(logJson.state, 'succeeded');
    assert.match(logJson.log, /linking…/);

    const saved = await cli.json(['download', `${app.name}@1.0.0`]);
    assert.equal(saved.file, path.join(cli.home, `${app.name}-1.0.0.wasm`));
    assert.deepEqual(await readFile(saved.file), module);
    assert.equal(saved.sha256, createHash('sha256').update(module).digest('hex'));
    assert.equal(saved.variant, 'original');
    const explicit = await cli.run(['download', version.id, '-o', 'out/x.wasm', '--variant', 'original'], { cwd: cli.home });
    assert.match(explicit.stderr + explicit.stdout, /ENOENT|no such file/i, 'a missing directory is an error');
    await mkdir(path.join(cli.home, 'out'));
    const written = await cli.run(['download', version.id, '-o', 'out/x.wasm', '--variant', 'original']);
    assert.equal(written.code, 0, written.stderr);
    assert.match(written.stdout, /Saved out\/x\.wasm: .* sha256 [0-9a-f]{64} \(verified\)/);
    const piped = await cli.run(['download', version.id, '-o', '-']);
    assert.equal(piped.stdout, module.toString('utf8'));
    const missingVariant = await cli.run(['download', version.id, '--variant', 'optimized']);
    assert.equal(missingVariant.code, 1);
    assert.match(missingVariant.stderr, /artifact variant optimized does not exist/);
  });

  it('streams NDJSON events with logs --follow --json, and exits 1 with --exit-status on failure', async () => {
    await drainJobs(t);
    const { build } = await appWithVersion();
    const follow = cli.run(['logs', build.id, '--follow', '--json', '--exit-status']);
    await playWorker(t, { outcome: 'failed', reason: 'compilation failed', log: ['error: expected `;`\n'] });
    const result = await follow;
    assert.equal(result.code, 1);
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as Json);
    assert.ok(events.some((event) => event.event === 'log' && /expected `;`/.test(event.data)));
    assert.equal(events.at(-1)?.event, 'end');
    assert.equal(events.at(-1)?.build.state, 'failed');
  });

  it('invokes a built function on the test bed, with --json matching the API', async () => {
    await drainJobs(t);
    const { app, version } = await appWithVersion();
    const before = await cli.run(['invoke', version.id, '--input', 'x']);
    assert.equal(before.code, 1);
    assert.match(before.stderr, /has no successful build yet; see `kiln builds list --version /);
    await playWorker(t, { outcome: 'succeeded', module: runnableWasiCommand() });
    const result = await cli.json(['invoke', `${app.name}@1.0.0`, '--input', 'hello', '--arg', 'a', '--env', 'K=V']);
    assert.equal(result.kind, 'wasi-command');
    assert.equal(result.outcome, 'ok');
    assert.equal(result.exitCode, 0);
    const direct = await api('POST', `/v1/versions/${version.id}/invoke`, { json: { input: { text: 'hello' }, args: ['a'], env: { K: 'V' } } });
    assert.deepEqual(Object.keys(result).sort(), Object.keys(direct.body).sort());
    const badEnv = await cli.run(['invoke', version.id, '--env', 'novalue']);
    assert.match(badEnv.stderr, /--env "novalue": expected KEY=VALUE/);
  });

  it('cancels a queued build, rebuilds, and reports the rebuild', async () => {
    await drainJobs(t);
    const { version, build } = await appWithVersion();
    const cancelled = await cli.json(['cancel', build.id]);
    assert.equal(cancelled.state, 'cancelled');
    const again = await cli.run(['cancel', build.id]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already ended as cancelled/);

    const queued = await cli.json(['rebuild', version.id, '--no-wait']);
    assert.equal(queued.number, 2);
    assert.equal(queued.state, 'queued');
    await playWorker(t, { outcome: 'succeeded', module: wasiCommandModule(), log: ['ok\n'] });
    const rebuild = cli.run(['rebuild', version.id]);
    await playWorker(t, { outcome: 'failed', reason: 'compilation failed', log: ['error[E0425]: cannot find value `x`\n'] });
    const failed = await rebuild;
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /error\[E0425\]/);
    assert.match(failed.stdout, /Build #3 failed: compilation failed/);
  });
});

describe('kiln deploy (scripted worker)', () => {
  it('refuses to create an application without a terminal unless --yes', async () => {
    const dir = await projectDir({ 'src/main.c': 'int main(void) { return 0; }\n', 'kiln.toml': `name = "no-yes-${randomUUID().slice(0, 6)}"\nversion = "1.0.0"\n` });
    const result = await cli.run(['deploy', dir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /does not exist\. Pass --yes to create it, or create it first: kiln apps create no-yes-/);
  });

  it('uploads, streams the log, and summarizes a success (exit 0) with --json matching the API', async () => {
    await drainJobs(t);
    const name = `deploy-${randomUUID().slice(0, 6)}`;
    const dir = await projectDir({
      'src/main.c': 'int main(void) { return 0; }\n',
      'kiln.toml': `name = "${name}"\nversion = "2.1.0"\nnotes = "from kiln.toml"\n[optimize]\nwasm-opt = "Oz"\n`,
      '.gitignore': 'secrets.txt\n',
      'secrets.txt': 'do not upload',
    });
    const module = wasiCommandModule();
    const deploy = cli.run(['deploy', dir, '--yes', '--json']);
    await playWorker(t, { outcome: 'succeeded', log: ['building 1 file\n', 'done\n'], pauseMs: 100, module });
    const result = await deploy;
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.stdout) as Json;
    assert.equal(summary.application.name, name);
    assert.equal(summary.version.version, '2.1.0');
    assert.equal(summary.version.notes, 'from kiln.toml');
    assert.equal(summary.version.optimize.wasmOpt, 'Oz');
    assert.equal(summary.version.language, 'c');
    assert.equal(summary.version.kind, 'wasi-command');
    assert.deepEqual(summary.build, (await api('GET', `/v1/builds/${summary.build.id}`)).body);
    assert.equal(summary.artifact.sha256, createHash('sha256').update(module).digest('hex'));
    assert.equal(summary.archive.files, 3, '.gitignore, kiln.toml, src/main.c: not secrets.txt');
    assert.match(result.stderr, /building 1 file\ndone\n/, 'with --json the live log goes to stderr');
    const source = await api('GET', `/v1/versions/${summary.version.id}/source`);
    assert.equal(createHash('sha256').update(source.raw).digest('hex'), summary.archive.sha256);

    const twice = await cli.run(['deploy', dir, '--yes']);
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, new RegExp(`${name} already has version 2\\.1\\.0 \\(from kiln\\.toml version\\): bump it there, or pass --version`));

    const human = cli.run(['deploy', dir, '--version', '2.1.1']);
    await playWorker(t, { outcome: 'succeeded', log: ['compiling\n'], module });
    const printed = await human;
    assert.equal(printed.code, 0, printed.stderr);
    assert.match(printed.stdout, /compiling\n/);
    assert.match(printed.stdout, new RegExp(`✔ Deployed ${name} 2\\.1\\.1: build #1 succeeded`));
    assert.match(printed.stdout, /artifact\s+original\s+\S+ B\s+sha256 [0-9a-f]{64}/);
    assert.match(printed.stdout, /source\s+3 files/);
    assert.match(printed.stdout, /built in\s+.*compile 42 ms/);
    assert.match(printed.stderr, /Packed 3 files/);
  });

  it('exits 1 on a failed build, showing the log tail and the reason', async () => {
    await drainJobs(t);
    const dir = await projectDir({ 'src/main.c': 'int main(void) { return oops; }\n' });
    const deploy = cli.run(['deploy', dir, '--yes', '--app', `fail-${randomUUID().slice(0, 6)}`, '--version', '0.0.1']);
    const log = Array.from({ length: 40 }, (_, index) => `line ${index}\n`).concat(["src/main.c:1:31: error: use of undeclared identifier 'oops'\n"]);
    await playWorker(t, { outcome: 'failed', reason: 'compilation failed (exit code 1)', log: [log.join('')] });
    const result = await deploy;
    assert.equal(result.code, 1);
    assert.match(result.stdout, /✖ Build #1 failed: compilation failed \(exit code 1\)/);
    const tail = result.stdout.slice(result.stdout.indexOf('last 30 lines'));
    assert.match(tail, /use of undeclared identifier 'oops'/);
    assert.doesNotMatch(tail, /line 5\n/, 'only the tail is repeated');
    assert.match(result.stdout, /fix the error above/);
  });

  it('on a terminal: asks before creating the application, draws progress, colours and tables', { skip: scriptMissing() }, async () => {
    await drainJobs(t);
    const dir = await projectDir({ 'src/main.c': 'int main(void) { return 0; }\n' });
    const name = `tty-${randomUUID().slice(0, 6)}`;
    // script(1) gives the CLI a pseudo-terminal, as a person's shell would.
    const deploy = cli.run(['-qc', `${KILN_BIN} deploy ${dir} --app ${name} --version 1.0.0`, '/dev/null'], { bin: 'script', input: 'y\n', env: { NO_COLOR: undefined, TERM: 'xterm' } });
    await playWorker(t, { outcome: 'succeeded', log: ['compiling\n'], module: wasiCommandModule() });
    const result = await deploy;
    assert.equal(result.code, 0, result.stdout);
    assert.match(result.stdout, new RegExp(`Application ${name} does not exist on .* Create it\\? \\[Y/n\\]`));
    assert.match(result.stdout, /Uploading █+ 100%/);
    assert.ok(result.stdout.includes('\u001b[32m✔\u001b[39m Deployed'), 'green on a terminal');
    const table = await cli.run(['-qc', `${KILN_BIN} apps list`, '/dev/null'], { bin: 'script', env: { NO_COLOR: undefined, TERM: 'xterm' } });
    assert.ok(table.stdout.includes('\u001b[1mID  '), 'a table with a bold header');
    assert.match(table.stdout, /ID\s+NAME\s+CREATED\s+NOTES/);
  });

  it('warns when the archive is large, naming the biggest files', async () => {
    const dir = await projectDir({ 'src/main.c': 'int main(void) { return 0; }\n' });
    await writeFile(path.join(dir, 'src', 'blob.bin'), randomBytes(11 * 1024 * 1024));
    const result = await cli.run(['deploy', dir, '--dry-run']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /warning: the archive is large \(11 MiB\); the biggest files are:\n\s+11 MiB\s+src\/blob\.bin/);
    assert.match(result.stderr, /\.gitignore or \.kilnignore/);
  });

  it('returns at once with --no-wait, and prints what would be uploaded with --dry-run', async () => {
    await drainJobs(t);
    const dir = await projectDir({ 'src/main.c': 'int main(void) { return 0; }\n' });
    const name = `nowait-${randomUUID().slice(0, 6)}`;
    const queued = await cli.json(['deploy', dir, '--yes', '--app', name, '--no-wait']);
    assert.equal(queued.build.state, 'queued');
    assert.match(queued.version.version, /^0\.0\.0-dev\.\d{14}$/, 'no declared version: a dated pre-release');
    const dry = await cli.json(['deploy', dir, '--dry-run', '--app', 'never-created']);
    assert.equal(dry.dryRun, true);
    assert.deepEqual(dry.archive.files, ['src/main.c']);
    assert.equal((await cli.run(['apps', 'show', 'never-created'])).code, 1, 'a dry run creates nothing');
  });
});
