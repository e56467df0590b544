/**
 * The component reader and the http-component kind rules on hand-assembled
 * component binaries (the format is small enough to write byte by byte), and
 * the evaluator's verdict when a core module and a component are mixed up.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeArtifact } from '../../src/evaluator/evaluate.ts';
import { encodeULEB } from '../../src/wasm/binary.ts';
import { inspectComponent, isComponentBinary } from '../../src/wasm/component.ts';
import { checkComponentKind } from '../../src/wasm/component-kind.ts';
import { InvalidModuleError } from '../../src/wasm/inspect.ts';
import { filterWat, wat } from '../testbed/wat.ts';

const PREAMBLE = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const utf8 = new TextEncoder();

function name(text: string): number[] {
  const bytes = [...utf8.encode(text)];
  return [...encodeULEB(bytes.length), ...bytes];
}

function section(id: number, content: number[]): number[] {
  return [id, ...encodeULEB(content.length), ...content];
}

/** An import of an instance type: `0x00 name 0x05 typeidx`. */
function importInstance(text: string): number[] {
  return [0x00, ...name(text), 0x05, 0x00];
}

/** An export of an instance: `0x00 name sort(instance) idx 0x00 (no descriptor)`. */
function exportInstance(text: string): number[] {
  return [0x00, ...name(text), 0x05, 0x00, 0x00];
}

function component(imports: number[][], exports: number[][], extra: number[] = []): Uint8Array {
  const importSection = imports.length === 0 ? [] : section(10, [...encodeULEB(imports.length), ...imports.flat()]);
  const exportSection = exports.length === 0 ? [] : section(11, [...encodeULEB(exports.length), ...exports.flat()]);
  // A custom section and an (empty) core module section, which the reader must skip.
  const skipped = [...section(0, name('producers')), ...section(1, [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00])];
  return Uint8Array.from([...PREAMBLE, ...skipped, ...importSection, ...extra, ...exportSection]);
}

const GOOD_IMPORTS = ['wasi:io/poll@0.2.12', 'wasi:http/types@0.2.10', 'wasi:http/outgoing-handler@0.2.10', 'wasi:cli/stdout@0.2.12', 'wasi:filesystem/preopens@0.2.12'];
const HANDLER = 'wasi:http/incoming-handler@0.2.10';

describe('component reader', () => {
  it('reads top-level import and export names with their versions, skipping other sections', () => {
    const bytes = component(GOOD_IMPORTS.map(importInstance), [exportInstance(HANDLER)]);
    assert.equal(isComponentBinary(bytes), true);
    const info = inspectComponent(bytes);
    assert.deepEqual(info.imports.map((entry) => entry.name), GOOD_IMPORTS);
    assert.ok(info.imports.every((entry) => entry.kind === 'instance'));
    assert.deepEqual(info.exports, [{ name: HANDLER, kind: 'instance' }]);
    assert.equal(info.size, bytes.length);
  });

  it('reads the newer name encoding that carries the version apart (0x01 name version)', () => {
    const versioned = [0x01, ...name('wasi:http/types'), ...name('0.2.10'), 0x05, 0x00];
    const info = inspectComponent(component([versioned], [exportInstance(HANDLER)]));
    assert.equal(info.imports[0]?.name, 'wasi:http/types@0.2.10');
  });

  it('refuses a core module by name, and hostile or truncated binaries with an InvalidModuleError', () => {
    const core = Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    assert.throws(() => inspectComponent(core), /core WebAssembly module, not a component/);
    const good = component(GOOD_IMPORTS.map(importInstance), [exportInstance(HANDLER)]);
    for (let cut = 0; cut < good.length; cut += 7) {
      // Every prefix either parses (a whole number of sections) or fails cleanly, never crashes.
      try {
        inspectComponent(good.subarray(0, cut));
      } catch (error) {
        assert.ok(error instanceof InvalidModuleError, `cut at ${cut}: ${String(error)}`);
      }
    }
    const hugeCount = Uint8Array.from([...PREAMBLE, ...section(10, [0xff, 0xff, 0xff, 0xff, 0x0f])]);
    assert.throws(() => inspectComponent(hugeCount), /import count 4294967295 is larger than/);
    const badSection = Uint8Array.from([...PREAMBLE, 42, 0]);
    assert.throws(() => inspectComponent(badSection), /unknown component section id 42/);
    const badDescriptor = component([[0x00, ...name('wasi:io/poll@0.2.10'), 0x09, 0x00]], []);
    assert.throws(() => inspectComponent(badDescriptor), /unknown extern descriptor 0x9/);
    const lying = Uint8Array.from([...PREAMBLE, 10, 100, 1]);
    assert.throws(() => inspectComponent(lying), /declares 100 bytes but only 1 remain/);
  });
});

describe('http-component kind rules', () => {
  const check = (imports: string[], exports: string[], size?: number) => {
    const info = inspectComponent(component(imports.map(importInstance), exports.map(exportInstance)));
    return checkComponentKind(size === undefined ? info : { ...info, size });
  };

  it('accepts the wasi:http/proxy world plus the adapter’s stubs, at any 0.2 patch version', () => {
    assert.deepEqual(check(GOOD_IMPORTS, [HANDLER]), { ok: true });
    assert.deepEqual(check([], ['wasi:http/incoming-handler@0.2.0']), { ok: true });
  });

  it('names what is wrong: no handler, extra exports, imports outside the world, other versions, size', () => {
    const noHandler = check(GOOD_IMPORTS, []);
    assert.equal(noHandler.ok, false);
    assert.match(noHandler.ok ? '' : noHandler.problems.join(' '), /does not export wasi:http\/incoming-handler@0\.2\.x/);
    const sockets = check(['wasi:sockets/tcp@0.2.10', 'acme:secrets/vault@1.0.0'], [HANDLER, 'my:app/extra']);
    const text = sockets.ok ? '' : sockets.problems.join(' ');
    assert.match(text, /imports wasi:sockets\/tcp@0\.2\.10, which an HTTP edge host does not provide/);
    assert.match(text, /imports acme:secrets\/vault@1\.0\.0/);
    assert.match(text, /exports my:app\/extra, but an http-component/);
    const preview3 = check(['wasi:http/types@0.3.0'], ['wasi:http/incoming-handler@0.3.0']);
    assert.match(preview3.ok ? '' : preview3.problems.join(' '), /only WASI 0\.2 \(@0\.2\.x\) interfaces are supported/);
    const unversioned = check(['wasi:http/types'], [HANDLER]);
    assert.match(unversioned.ok ? '' : unversioned.problems.join(' '), /without a version/);
    const huge = check(GOOD_IMPORTS, [HANDLER], 40 * 1024 ** 2);
    assert.match(huge.ok ? '' : huge.problems.join(' '), /more than the 33554432-byte limit/);
  });
});

describe('evaluator: core module versus component', () => {
  const goodComponent = component(GOOD_IMPORTS.map(importInstance), [exportInstance(HANDLER)]);

  it('accepts a fitting component, detecting the kind when none is declared', () => {
    assert.deepEqual(judgeArtifact(goodComponent, 'http-component'), { ok: true, kind: 'http-component' });
    assert.deepEqual(judgeArtifact(goodComponent, null), { ok: true, kind: 'http-component' });
  });

  it('a core module declared http-component is a clear failure, and a component declared proxy-wasm too', () => {
    const filter = wat(filterWat(''));
    const asComponent = judgeArtifact(filter, 'http-component');
    assert.equal(asComponent.ok, false);
    assert.match(asComponent.ok ? '' : asComponent.reason, /core WebAssembly module, but an http-component must be a WebAssembly component/);
    const asFilter = judgeArtifact(goodComponent, 'proxy-wasm');
    assert.equal(asFilter.ok, false);
    assert.match(asFilter.ok ? '' : asFilter.reason, /produced a WebAssembly component, but a proxy-wasm must be a core module/);
  });

  it('a component outside the world fails with the rule it broke', () => {
    const verdict = judgeArtifact(component(['wasi:sockets/tcp@0.2.10'].map(importInstance), [exportInstance(HANDLER)]), 'http-component');
    assert.equal(verdict.ok, false);
    assert.match(verdict.ok ? '' : verdict.reason, /does not fit the http-component kind: .*wasi:sockets\/tcp/);
  });
});

describe('optimize stage for a component', () => {
  it('records every requested step as skipped with why, runs nothing and serves the original', async () => {
    const { optimizeArtifact } = await import('../../src/optimize/optimize.ts');
    const lines: string[] = [];
    const bytes = component([], [exportInstance(HANDLER)]);
    // No sandbox exists here: the component path must not reach one.
    const result = await optimizeArtifact({
      original: bytes,
      kind: 'http-component',
      options: { strip: true, wasmOpt: 'O2', wizer: true, memoryCapPages: 16 },
      sandbox: undefined as never,
      workRoot: '/nonexistent',
      limits: undefined as never,
      log: (line) => lines.push(line),
      onOutput: () => undefined,
    });
    assert.equal(result.optimized, undefined);
    assert.equal(result.details.optimize.served, 'original');
    assert.deepEqual(result.details.optimize.steps.map((step) => [step.name, step.status]), [
      ['strip', 'skipped'],
      ['wizer', 'skipped'],
      ['wasm-opt', 'skipped'],
      ['memory-cap', 'skipped'],
    ]);
    assert.ok(result.details.optimize.steps.every((step) => (step.reason ?? '').length > 20));
    assert.ok(lines.some((line) => /wasm-opt skipped: wasm-opt \(binaryen\) reads core modules/.test(line)));
  });
});
