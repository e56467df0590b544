/**
 * Does a module fit the app kind the user declared? The evaluator runs this on
 * every produced module before a build may succeed, so each problem is a
 * sentence the user can act on, naming the offending import or export.
 *
 * Rules (and why):
 *
 * proxy-wasm (Proxy-Wasm ABI 0.2.1):
 *  - exports its memory as "memory" (32-bit): the host passes data through it
 *    and the ABI's pointers are i32.
 *  - exports `proxy_on_memory_allocate`, or `malloc` (the deprecated name older
 *    SDKs export; the spec says hosts fall back to it).
 *  - exports `proxy_on_context_create`: without it the host can create no
 *    root or stream context, so the filter can never run.
 *  - exports the marker `proxy_abi_version_0_2_1` or `proxy_abi_version_0_2_0`.
 *    0.2.0 is accepted: 0.2.1 is a patch release of it, and by the spec's
 *    versioning rules a patch only adds enum values, so a 0.2.1 host runs
 *    0.2.0 plugins unchanged (and older SDKs still emit 0.2.0). Any other
 *    marker (e.g. 0.1.0, a different minor version) is rejected by name,
 *    since the test bed implements 0.2.x only.
 *  - does not export `_start`. The spec tolerates it when `_initialize` is
 *    absent, but a module exporting `_start` is a WASI command: its toolchain
 *    may assume nothing is called after `_start` returns (wasi-libc runs
 *    destructors there, lld wraps every export with constructors), which
 *    breaks a long-lived filter. Reactors export `_initialize` (allowed).
 *  - imports only functions, from `env` when named `proxy_*` (the host ABI;
 *    any other env import is usually a symbol the linker left undefined) and
 *    from `wasi_snapshot_preview1` / `wasi_unstable` (hosts provide a WASI
 *    subset). Names inside those are not checked against a list: hosts ship
 *    extensions, and the test bed answers unknown calls with UNIMPLEMENTED.
 *
 * http-component (WASI 0.2 component in the wasi:http/proxy world): not a
 *  core module at all; its rules are in component-kind.ts. A core module
 *  declared as one fails here with a sentence saying so.
 *
 * wasi-command (WASI preview 1 command):
 *  - exports `_start` (a function) and its memory as "memory" (32-bit).
 *  - does not also export `_initialize`: the WASI application ABI makes
 *    command and reactor mutually exclusive.
 *  - imports only functions from `wasi_snapshot_preview1` — no `env` (the
 *    runner provides nothing there), no legacy `wasi_unstable`.
 */
import type { ExportInfo, ImportInfo, ModuleInfo } from './inspect.ts';
import type { AppKind } from './app-kinds.ts';
import { PROXY_WASM_ABI_MARKERS, PROXY_WASM_ABI_MARKER_PREFIX } from './proxy-wasm-abi.ts';

export { APP_KINDS, type AppKind } from './app-kinds.ts';
/** Kinds whose artifact is a core module (checked by checkKind); http-component is a component (component-kind.ts). */
export type CoreAppKind = Exclude<AppKind, 'http-component'>;

export function isCoreKind(kind: AppKind): kind is CoreAppKind {
  return kind !== 'http-component';
}

export type KindCheck = { ok: true } | { ok: false; problems: string[] };

const WASI = 'wasi_snapshot_preview1';
const WASI_LEGACY = 'wasi_unstable';

export function checkKind(info: ModuleInfo, kind: AppKind): KindCheck {
  if (!isCoreKind(kind)) return { ok: false, problems: ['It is a core WebAssembly module, but an http-component must be a WebAssembly component (WASI 0.2) exporting wasi:http/incoming-handler; build it with componentize-js or cargo component, or declare the kind of the module.'] };
  const problems = kind === 'proxy-wasm' ? proxyWasmProblems(info) : wasiCommandProblems(info);
  return problems.length === 0 ? { ok: true } : { ok: false, problems };
}

/**
 * The kind a module was evidently built for, from its marker exports alone
 * (a `proxy_abi_version_*` or `proxy_on_*` export means proxy-wasm, else
 * `_start` means wasi-command), or undefined when there is no such sign.
 * It is a hint for messages ("declared wasi-command but looks like a
 * proxy-wasm filter"); checkKind gives the verdict.
 */
export function detectKind(info: ModuleInfo): CoreAppKind | undefined {
  const names = info.exports.map((e) => e.name);
  if (names.some((n) => n.startsWith(PROXY_WASM_ABI_MARKER_PREFIX) || n.startsWith('proxy_on_'))) return 'proxy-wasm';
  if (names.includes('_start')) return 'wasi-command';
  return undefined;
}

function proxyWasmProblems(info: ModuleInfo): string[] {
  const problems = [...memoryExportProblems(info, 'the proxy-wasm host exchanges data with the filter through it')];
  if (!hasFunction(info, 'proxy_on_memory_allocate') && !hasFunction(info, 'malloc')) {
    problems.push('It exports neither the function proxy_on_memory_allocate nor malloc, so the host cannot allocate memory in the filter to pass it data.');
  }
  problems.push(...requiredFunctionProblems(info, 'proxy_on_context_create', 'the host calls it to create every plugin (root) and stream context'));
  problems.push(...abiMarkerProblems(info));
  if (findExport(info, '_start') !== undefined) {
    problems.push('It exports _start, which makes it a WASI command that expects to run once and finish; build the filter as a reactor that exports _initialize instead (for example clang -mexec-model=reactor, or a Rust cdylib).');
  }
  problems.push(...info.imports.flatMap(proxyWasmImportProblem));
  return problems;
}

function proxyWasmImportProblem(entry: ImportInfo): string[] {
  const what = `${entry.module}.${entry.name}`;
  if (entry.module === 'env' || entry.module === WASI || entry.module === WASI_LEGACY) {
    if (entry.kind !== 'function') {
      return [`It imports the ${entry.kind} ${what}, but a proxy-wasm host provides only functions; the module must define its own ${entry.kind}.`];
    }
    if (entry.module === 'env' && !entry.name.startsWith('proxy_')) {
      return [`It imports ${what}, which no proxy-wasm host provides (from env only proxy_* functions exist); this is usually a function the code declares but never defines.`];
    }
    return [];
  }
  return [`It imports ${what} from module "${entry.module}"; a proxy-wasm filter may import only from env (proxy_* functions), ${WASI} and ${WASI_LEGACY}.`];
}

function abiMarkerProblems(info: ModuleInfo): string[] {
  if (PROXY_WASM_ABI_MARKERS.some((marker) => hasFunction(info, marker))) return [];
  const others = info.exports.filter((e) => e.name.startsWith(PROXY_WASM_ABI_MARKER_PREFIX)).map((e) => e.name);
  if (others.length > 0) {
    return [`It exports ${others.join(', ')}, but only Proxy-Wasm ABI 0.2.1 (and the compatible 0.2.0) is supported; rebuild with an SDK that targets ABI 0.2.1.`];
  }
  return ['It does not export the ABI version marker proxy_abi_version_0_2_1 (or proxy_abi_version_0_2_0), so hosts cannot tell which Proxy-Wasm ABI it speaks; build it with a proxy-wasm SDK.'];
}

function wasiCommandProblems(info: ModuleInfo): string[] {
  const problems = requiredFunctionProblems(info, '_start', 'it is the entry point a WASI runner calls (build an executable, not a library)');
  problems.push(...memoryExportProblems(info, 'WASI calls read and write through it'));
  if (findExport(info, '_initialize') !== undefined) {
    problems.push('It exports _initialize as well as _start, which makes it both a reactor and a command; a WASI command must export only _start.');
  }
  problems.push(...info.imports.flatMap(wasiCommandImportProblem));
  return problems;
}

function wasiCommandImportProblem(entry: ImportInfo): string[] {
  const what = `${entry.module}.${entry.name}`;
  if (entry.module === WASI) {
    return entry.kind === 'function' ? [] : [`It imports the ${entry.kind} ${what}, but WASI provides only functions; the module must define its own ${entry.kind}.`];
  }
  if (entry.module === WASI_LEGACY) {
    return [`It imports ${what} from the old ${WASI_LEGACY} API; rebuild against ${WASI}.`];
  }
  return [`It imports ${what}, but a WASI command may import only from ${WASI}${entry.module === 'env' ? '; an env import is usually a function the code declares but never defines' : ''}.`];
}

function memoryExportProblems(info: ModuleInfo, why: string): string[] {
  const memory = findExport(info, 'memory');
  if (memory === undefined) return [`It does not export its memory as "memory"; ${why}.`];
  if (memory.kind !== 'memory') return [`Its export "memory" is a ${memory.kind}, not a memory; ${why}.`];
  if (info.memories[memory.index]?.memory64) return ['Its exported memory is 64-bit, but the ABI passes 32-bit pointers; build for wasm32.'];
  return [];
}

function requiredFunctionProblems(info: ModuleInfo, name: string, why: string): string[] {
  const found = findExport(info, name);
  if (found === undefined) return [`It does not export ${name}; ${why}.`];
  if (found.kind !== 'function') return [`Its export ${name} is a ${found.kind}, not a function; ${why}.`];
  return [];
}

function hasFunction(info: ModuleInfo, name: string): boolean {
  return findExport(info, name)?.kind === 'function';
}

function findExport(info: ModuleInfo, name: string): ExportInfo | undefined {
  return info.exports.find((e) => e.name === name);
}
