/** The CLI's pure parts: ignore rules, SSE parsing, config resolution, project detection, packing. */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { ApiClient, KilnUnreachableError } from '../../src/cli/api-client.ts';
import { resolveConfig } from '../../src/cli/config.ts';
import { createIgnoreFilter, parseIgnoreFile } from '../../src/cli/gitignore.ts';
import { packProject } from '../../src/cli/pack-project.ts';
import { applicationName, devVersion, readProject } from '../../src/cli/project.ts';
import { SseParser } from '../../src/cli/sse.ts';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-cli-pieces-'));
});
after(() => rm(scratch, { recursive: true, force: true }));

async function tree(files: Record<string, string>): Promise<string> {
  const root = await mkdtemp(path.join(scratch, 'tree-'));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), { recursive: true });
    await writeFile(path.join(root, name), content);
  }
  return root;
}

describe('gitignore matching', () => {
  const matches = (rules: string, relPath: string, kind: 'file' | 'directory' = 'file') => {
    let ignored = false;
    for (const rule of parseIgnoreFile(rules)) {
      if (rule.directoryOnly && kind !== 'directory') continue;
      if (rule.regex.test(relPath)) ignored = !rule.negate;
    }
    return ignored;
  };

  it('follows the gitignore(5) rules', () => {
    const cases: Array<[string, string, 'file' | 'directory', boolean]> = [
      ['*.log', 'debug.log', 'file', true],
      ['*.log', 'deep/down/debug.log', 'file', true],
      ['*.log', 'log.txt', 'file', false],
      ['/build', 'build', 'directory', true],
      ['/build', 'src/build', 'directory', false],
      ['build/', 'src/build', 'directory', true],
      ['build/', 'build', 'file', false],
      ['doc/*.txt', 'doc/notes.txt', 'file', true],
      ['doc/*.txt', 'doc/server/arch.txt', 'file', false],
      ['doc/*.txt', 'sub/doc/notes.txt', 'file', false],
      ['**/foo', 'a/b/foo', 'file', true],
      ['**/foo', 'foo', 'file', true],
      ['a/**/b', 'a/b', 'file', true],
      ['a/**/b', 'a/x/y/b', 'file', true],
      ['abc/**', 'abc/x/y', 'file', true],
      ['abc/**', 'abc', 'directory', false],
      ['file?.txt', 'file1.txt', 'file', true],
      ['file?.txt', 'file10.txt', 'file', false],
      ['[ab].c', 'a.c', 'file', true],
      ['[!ab].c', 'a.c', 'file', false],
      ['[!ab].c', 'z.c', 'file', true],
      ['\\#hash', '#hash', 'file', true],
      ['# comment', '# comment', 'file', false],
      ['*.wasm\n!keep.wasm', 'keep.wasm', 'file', false],
      ['*.wasm\n!keep.wasm', 'other.wasm', 'file', true],
      ['secret.txt   ', 'secret.txt', 'file', true],
      ['a.b', 'axb', 'file', false],
    ];
    for (const [rules, relPath, kind, expected] of cases) assert.equal(matches(rules, relPath, kind), expected, `${JSON.stringify(rules)} on ${relPath} (${kind})`);
  });

  it('applies nested .gitignore files, .kilnignore after them, and parents up to the repository root', async () => {
    const repo = await tree({
      '.git/HEAD': 'ref: refs/heads/main\n',
      '.gitignore': '*.secret\nproject/generated/\n',
      'project/.gitignore': 'dist/\n*.tmp\n',
      'project/.kilnignore': '!keep.tmp\n',
      'project/sub/.gitignore': 'local.txt\n',
    });
    const filter = createIgnoreFilter(path.join(repo, 'project'));
    assert.equal(filter.ignore('dist', 'directory'), true);
    assert.equal(filter.ignore('a.tmp', 'file'), true);
    assert.equal(filter.ignore('keep.tmp', 'file'), false, '.kilnignore re-includes');
    assert.equal(filter.ignore('sub/local.txt', 'file'), true, 'nested file applies below it');
    assert.equal(filter.ignore('local.txt', 'file'), false, 'nested file does not apply above it');
    assert.equal(filter.ignore('api.secret', 'file'), true, "the repository root's .gitignore applies");
    assert.equal(filter.ignore('generated', 'directory'), true, 'anchored parent rules are matched from their own directory');
    assert.equal(filter.ignore('src/main.c', 'file'), false);
  });
});

describe('SSE parsing', () => {
  it('splits events across arbitrary chunk boundaries, joins multi-line data, skips comments', () => {
    const stream = ': keep-alive\n\nevent: log\ndata: line one\ndata: line two\n\nevent: end\r\ndata: {"state":"succeeded"}\r\n\r\n';
    for (const size of [1, 2, 3, 7, stream.length]) {
      const parser = new SseParser();
      const events = [];
      for (let i = 0; i < stream.length; i += size) events.push(...parser.push(stream.slice(i, i + size)));
      assert.deepEqual(events, [
        { event: 'log', data: 'line one\nline two' },
        { event: 'end', data: '{"state":"succeeded"}' },
      ], `chunks of ${size}`);
    }
  });
});

describe('following a build log', () => {
  it('resumes a dropped stream without showing any byte twice', async () => {
    let connections = 0;
    const server = createServer((request, response) => {
      connections++;
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      // The server replays the whole log on every connection, as Kiln's does.
      response.write('event: log\ndata: één\n\n');
      if (connections === 1) return void setTimeout(() => response.destroy(), 50);
      response.write('event: log\ndata: twee\ndata: drie\n\n');
      if (connections === 2) return void response.end();
      response.write('event: log\ndata: vier\n\nevent: end\ndata: {"state":"succeeded"}\n\n');
      response.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const client = new ApiClient({ url: `http://127.0.0.1:${port}`, token: 't', configFile: '/dev/null' });
      let shown = '';
      const build = await client.followBuild(randomUUID(), { onLog: (text) => (shown += text) });
      assert.equal(build.state, 'succeeded');
      assert.equal(shown, 'éénvier'.replace('vier', 'twee\ndrievier'));
      assert.equal(connections, 3);
    } finally {
      server.close();
    }
  });

  it('reports a server it cannot reach at once, naming the URL', async () => {
    const client = new ApiClient({ url: 'http://127.0.0.1:1', configFile: '/dev/null' });
    await assert.rejects(client.followBuild(randomUUID(), {}), (error: Error) => error instanceof KilnUnreachableError && /cannot reach Kiln at http:\/\/127\.0\.0\.1:1/.test(error.message));
  });
});

describe('config resolution', () => {
  it('prefers flags, then KILN_*, then the stored login, then a local kiln serve token (loopback only)', async () => {
    const home = await tree({ '.config/kiln/config.json': JSON.stringify({ url: 'https://kiln.example.com', token: 'stored' }) });
    const project = await tree({ '.kiln/local-token': 'local-secret\n', 'deep/er/file': '' });
    const cwd = path.join(project, 'deep', 'er');
    const noLogin = { HOME: path.join(home, 'nowhere') };
    assert.deepEqual(pick(resolveConfig({}, noLogin, cwd)), { url: 'http://127.0.0.1:8080', token: 'local-secret', tokenSource: 'local' }, 'found by walking up');
    assert.deepEqual(pick(resolveConfig({}, { HOME: home }, cwd)), { url: 'https://kiln.example.com', token: 'stored', tokenSource: 'config' });
    assert.deepEqual(pick(resolveConfig({}, { HOME: home, KILN_URL: 'http://127.0.0.1:9000' }, cwd)), { url: 'http://127.0.0.1:9000', token: 'local-secret', tokenSource: 'local' });
    assert.deepEqual(pick(resolveConfig({}, { ...noLogin, KILN_URL: 'https://elsewhere.example.com/' }, cwd)), { url: 'https://elsewhere.example.com', token: undefined, tokenSource: undefined }, 'the local token never leaves the machine');
    assert.deepEqual(pick(resolveConfig({}, { HOME: home, KILN_URL: 'https://other.example.com' }, cwd)), { url: 'https://other.example.com', token: undefined, tokenSource: undefined }, 'the stored token only goes to its URL');
    assert.deepEqual(pick(resolveConfig({ token: 'flag' }, { HOME: home, KILN_TOKEN: 'env' }, cwd)), { url: 'https://kiln.example.com', token: 'flag', tokenSource: 'flag' });
    assert.deepEqual(pick(resolveConfig({}, { HOME: home, KILN_TOKEN: 'env' }, cwd)), { url: 'https://kiln.example.com', token: 'env', tokenSource: 'KILN_TOKEN' });
  });

  const pick = (config: ReturnType<typeof resolveConfig>) => ({ url: config.url, token: config.token, tokenSource: config.tokenSource });
});

describe('project detection', () => {
  it('reads name, version, language and kind from manifests, with kiln.toml overriding', async () => {
    const rust = await tree({ 'Cargo.toml': '[package]\nname = "My_Filter"\nversion = "1.4.2"\n\n[lib]\ncrate-type = ["cdylib"]\n', 'src/lib.rs': '' });
    const project = await readProject(rust);
    assert.equal(project.name.value, 'my-filter');
    assert.equal(project.version.value, '1.4.2');
    assert.equal(project.language?.value, 'rust');
    assert.equal(project.kind?.value, 'proxy-wasm');

    const overridden = await tree({
      'package.json': JSON.stringify({ name: '@acme/thing', version: '0.3.0', devDependencies: { assemblyscript: '*' } }),
      'assembly/index.ts': 'export function _start(): void {}',
      'kiln.toml': 'name = "renamed"\nversion = "2.0.0"\nphases = ["request_headers"]\nconfig-file = "conf.json"\n[optimize]\nwasm-opt = "Oz"\nwizer = false\n',
      'conf.json': '{"a":1}',
    });
    const read = await readProject(overridden);
    assert.equal(read.name.value, 'renamed');
    assert.equal(read.version.value, '2.0.0');
    assert.equal(read.language?.value, 'assemblyscript');
    assert.deepEqual(read.phases, ['request_headers']);
    assert.equal(read.config, '{"a":1}');
    assert.deepEqual(read.optimize, { wizer: false, wasmOpt: 'Oz' });

    await assert.rejects(readProject(await tree({ 'kiln.toml': 'kind = "daemon"\n', 'main.c': '' })), /kind = "daemon" is not one of proxy-wasm, wasi-command/);
    const bare = await readProject(await tree({ 'main.c': 'int main(void){return 0;}' }), new Date('2025-01-02T03:04:05Z'));
    assert.equal(bare.version.value, '0.0.0-dev.20250102030405');
    assert.equal(applicationName('@scope/Hello World!'), 'hello-world');
    assert.equal(devVersion(new Date('2030-12-31T23:59:59Z')), '0.0.0-dev.20301231235959');
  });
});

describe('packing a project', () => {
  it('respects .gitignore, skips target/, node_modules/ and .kiln/, refuses links leaving the directory', async () => {
    const root = await tree({
      'Cargo.toml': '[package]\nname = "x"\nversion = "0.1.0"\n',
      'src/main.rs': 'fn main() {}',
      '.gitignore': '*.log\n',
      'debug.log': 'noise',
      'target/release/x.wasm': 'binary',
      'node_modules/a/index.js': '',
      '.kiln/local-token': 'secret',
    });
    const packed = await packProject(root);
    assert.deepEqual(packed.files, ['.gitignore', 'Cargo.toml', 'src/main.rs']);
    assert.deepEqual(packed.ignored.sort(), ['.kiln/', 'debug.log']);
    const tarText = gunzipSync(packed.archive).toString('latin1');
    assert.equal(tarText.includes('secret'), false, 'the local token is never packed');
    assert.equal((await packProject(root)).sha256, packed.sha256, 'packing is deterministic');

    await symlink('/etc/passwd', path.join(root, 'src', 'escape'));
    await assert.rejects(packProject(root), /src\/escape.*outside the directory/);
  });
});
