/**
 * Test fixtures written in WebAssembly text, assembled at test time with
 * Debian's wat2wasm (wabt). Assembling text is not compiling user code: the
 * fixtures are ours.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const WAT2WASM = '/usr/bin/wat2wasm';

export function wat(source: string): Uint8Array<ArrayBuffer> {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-wat-'));
  try {
    writeFileSync(join(dir, 'm.wat'), source);
    execFileSync(WAT2WASM, [join(dir, 'm.wat'), '-o', join(dir, 'm.wasm')], { stdio: 'pipe' });
    return new Uint8Array(readFileSync(join(dir, 'm.wasm')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A filter skeleton: memory, a bump allocator, the ABI marker and context
 * creation; `body` adds imports-free functions and exports. `imports` go
 * before everything (WAT wants imports first).
 */
export function filterWat(body: string, imports = '', memoryPages = 2, maxPages?: number): string {
  return `(module
  ${imports}
  (memory (export "memory") ${memoryPages}${maxPages === undefined ? '' : ` ${maxPages}`})
  (global $heap (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  ${body}
)`;
}

/** A WASI command that writes "ok" to stdout and returns. */
export function okFunction(): Uint8Array<ArrayBuffer> {
  return wat(`(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "ok")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))`);
}

/** A WASI command whose _start never returns. */
export function busyFunction(): Uint8Array<ArrayBuffer> {
  return wat('(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))');
}
