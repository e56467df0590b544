/**
 * The UI's pure pieces, run in Node (which has Blob, File, CompressionStream):
 * the browser's tar.gz packer checked by the server's own archive validator
 * and extractor, the error-line rule, routes, build facts, form parsing, and
 * the static route's refusals.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Fastify from 'fastify';
import { extractArchive } from '../../src/archive/extract.ts';
import { inspectArchive } from '../../src/archive/inspect.ts';
import type { Build } from '../../src/api/types.ts';
import { loadUiFiles, MAX_UI_FILES, uiRoutes } from '../../src/api/routes/ui.ts';
import { compilerOf, variantFacts } from '../../web/src/format.ts';
import { MAX_PACK_FILES, packTarGz, PackError, type SourceFile } from '../../web/src/pack.ts';
import { parseRoute } from '../../web/src/route.ts';
import { isErrorLine } from '../../web/src/log-errors.ts';
import { nextPatch, parseEnvLines, parseHeaderLines } from '../../web/src/forms.ts';

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'kiln-web-units-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const file = (content: string): File => new File([content], 'x', { lastModified: 1_700_000_000_000 });

describe('the browser packer (web/src/pack.ts)', () => {
  it('writes a .tar.gz the API accepts and extracts byte for byte, long paths included', async () => {
    const deep = `${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(40)}.c`; // > 100 bytes: needs the ustar prefix
    const files: SourceFile[] = [
      { path: 'src/main.c', file: file('int main(void) { return 0; }\n') },
      { path: 'kiln.toml', file: file('kind = "wasi-command"\n') },
      { path: deep, file: file('x'.repeat(1000)) },
      { path: 'empty.txt', file: file('') },
    ];
    const archive = path.join(scratch, 'packed.tar.gz');
    await writeFile(archive, new Uint8Array(await (await packTarGz(files)).arrayBuffer()));
    const summary = await inspectArchive(archive);
    assert.equal(summary.format, 'tar.gz');
    assert.equal(summary.fileCount, 4);
    const out = path.join(scratch, 'out');
    await mkdir(out);
    await extractArchive(archive, out);
    assert.equal(await readFile(path.join(out, 'src/main.c'), 'utf8'), 'int main(void) { return 0; }\n');
    assert.equal(await readFile(path.join(out, deep), 'utf8'), 'x'.repeat(1000));
    assert.equal(await readFile(path.join(out, 'empty.txt'), 'utf8'), '');
  });

  it('refuses a path that no ustar header can hold', async () => {
    await assert.rejects(packTarGz([{ path: 'a'.repeat(300), file: file('x') }]), PackError);
  });

  it('names its limits', () => {
    assert.equal(MAX_PACK_FILES, 10_000);
  });
});

describe('build log errors', () => {
  it('finds compiler diagnostics and not ordinary lines', () => {
    assert.ok(isErrorLine("src/main.c:3:12: error: expected ';' after expression"));
    assert.ok(isErrorLine('error[E0308]: mismatched types'));
    assert.ok(isErrorLine('fatal error: stdio.h: No such file or directory'));
    assert.ok(isErrorLine('ERROR TS2322: Type'));
    assert.ok(!isErrorLine('clang --target=wasm32-wasi -O2 -o out.wasm src/main.c'));
    assert.ok(!isErrorLine('compiling error_handling.rs'));
    assert.ok(!isErrorLine('0 errors, 0 warnings'));
  });
});

describe('routes, versions and forms', () => {
  it('parses fragments and falls back to the list on anything else', () => {
    assert.deepEqual(parseRoute('#/apps/abc'), { page: 'app', applicationId: 'abc' });
    assert.deepEqual(parseRoute('#/apps/abc/try'), { page: 'try-latest', applicationId: 'abc' });
    assert.deepEqual(parseRoute('#/builds/b1'), { page: 'build', buildId: 'b1' });
    assert.deepEqual(parseRoute('#/versions/v1/try'), { page: 'try', versionId: 'v1' });
    assert.deepEqual(parseRoute('#/nonsense/%2F..'), { page: 'apps' });
    assert.deepEqual(parseRoute(''), { page: 'apps' });
  });

  it('suggests the next patch version', () => {
    assert.equal(nextPatch('1.2.3'), '1.2.4');
    assert.equal(nextPatch('2.0.9-beta.1'), '2.0.10');
    assert.equal(nextPatch(undefined), '1.0.0');
    assert.equal(nextPatch('garbage'), '1.0.0');
  });

  it('parses header and environment lines, naming a bad line', () => {
    assert.deepEqual(parseHeaderLines('Accept: text/plain\n\nx-a:  b \n'), [
      ['accept', 'text/plain'],
      ['x-a', 'b'],
    ]);
    assert.throws(() => parseHeaderLines('no colon here'), /header line "no colon here": expected "name: value"/);
    assert.deepEqual(parseEnvLines('A=1\nB=x=y'), { A: '1', B: 'x=y' });
    assert.throws(() => parseEnvLines('=1'), /expected KEY=VALUE/);
  });
});

describe('build facts from free-form details', () => {
  const build = (details: Record<string, unknown>, artifacts: Build['artifacts'] = {}): Build =>
    ({ details, artifacts }) as unknown as Build;

  it('reads sizes and start-up per variant, ignoring malformed details', () => {
    const good = build({ variants: { original: { bytes: 10, startup: { totalMs: 4 } }, optimized: { bytes: 5, startup: { totalMs: 1 } } } }, { original: { sha256: 'a', size: 12 } });
    assert.deepEqual(variantFacts(good, 'original'), { bytes: 12, startupMs: 4 });
    assert.deepEqual(variantFacts(good, 'optimized'), { bytes: 5, startupMs: 1 });
    assert.deepEqual(variantFacts(build({ variants: 'nonsense' }), 'original'), { bytes: undefined, startupMs: undefined });
    assert.deepEqual(variantFacts(build({ variants: { original: { startup: { error: 'not measured' } } } }), 'original'), { bytes: undefined, startupMs: undefined });
  });

  it('shows the compiler when the build record names it', () => {
    assert.equal(compilerOf(build({})), undefined);
    assert.equal(compilerOf(build({ compiler: 'clang 14.0.6' })), 'clang 14.0.6');
    assert.equal(compilerOf(build({ toolchain: { name: 'rustc', version: '1.85.0' } })), 'rustc 1.85.0');
  });
});

describe('the UI route (src/api/routes/ui.ts)', () => {
  it('answers 503 with how to build the UI when the bundle is missing, and keeps the CSP', async () => {
    const app = Fastify();
    await app.register(uiRoutes(path.join(scratch, 'no-bundle')));
    const answer = await app.inject({ method: 'GET', url: '/' });
    assert.equal(answer.statusCode, 503);
    assert.match(answer.body, /scripts\/build-ui\.sh/);
    assert.match(String(answer.headers['content-security-policy']), /default-src 'none'/);
    await app.close();
  });

  it('refuses a bundle with too many files instead of loading it all', async () => {
    const dir = path.join(scratch, 'huge');
    await mkdir(dir);
    await writeFile(path.join(dir, 'index.html'), '<!doctype html>');
    for (let index = 0; index <= MAX_UI_FILES; index++) await writeFile(path.join(dir, `f${index}.js`), '');
    await assert.rejects(loadUiFiles(dir), /larger than 200 files/);
  });

  it('serves only known file types, never a dotfile or source map it does not know', async () => {
    const dir = path.join(scratch, 'small');
    await mkdir(path.join(dir, 'assets'), { recursive: true });
    await writeFile(path.join(dir, 'index.html'), '<!doctype html><title>k</title>');
    await writeFile(path.join(dir, 'assets', 'a.js'), 'export {}');
    await writeFile(path.join(dir, '.env'), 'SECRET=1');
    const files = await loadUiFiles(dir);
    assert.deepEqual([...(files?.keys() ?? [])].sort(), ['/assets/a.js', '/index.html']);
  });
});
