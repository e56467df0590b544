/**
 * Prepared modules, cached per artifact sha256, kind and memory cap (bounded
 * LRU, in the main thread):
 *
 *   bytes → memory maximum set to the cap (setMemoryMaximum; added when the
 *   module declares none) → table maximums capped and counts checked
 *   (limitModuleShape) → kind and callback-type checks → import plan →
 *   WebAssembly.compile (async: V8 compiles off the event loop).
 *
 * The compiled WebAssembly.Module is posted to the workers with each
 * invocation; worker_threads share it without recompiling, so a module is
 * compiled once per process rather than once per worker (and a replaced
 * worker starts warm). Compiling never runs guest code, so it is safe here.
 *
 * Every problem that keeps a module from running at all is a 422 naming it.
 */
import { unprocessable } from '../errors.ts';
import { PAGE_SIZE } from '../wasm/binary.ts';
import { inspectModule } from '../wasm/inspect.ts';
import { checkKind, isCoreKind } from '../wasm/kind.ts';
import type { AppKind, CoreAppKind } from '../wasm/kind.ts';
import { setMemoryMaximum } from '../wasm/memory-cap.ts';
import { importOwnMemory } from '../wasm/memory-import.ts';
import type { MemoryType } from '../wasm/memory-import.ts';
import { limitModuleShape } from '../wasm/module-limits.ts';
import type { ModuleShapeLimits } from '../wasm/module-limits.ts';
import { exportProblems, planImports } from './link.ts';
import type { HostSignatures, PlannedImport, StubPolicy } from './link.ts';
import { Lru } from './lru.ts';
import { POOLED_MEMORY_IMPORT } from './memory-pool.ts';
import { PROXY_CALLBACK_SIGNATURES, PROXY_HOST_SIGNATURES, Status } from './proxy-wasm/abi.ts';
import { readSignatures, sig } from './signatures.ts';
import { Errno, WASI_LEGACY_MODULE, WASI_MODULE, WASI_SIGNATURES } from './wasi/wasi.ts';

export interface ArtifactRef {
  sha256: string;
  load(): Promise<Uint8Array>;
}

export interface PreparedModule {
  key: string;
  sha256: string;
  kind: AppKind;
  module: WebAssembly.Module;
  plan: PlannedImport[];
  /** Set when the compiled module imports its memory from the worker's pool (decision 0049). */
  memory?: MemoryType;
  /** The memory's effective maximum in bytes, after the cap. */
  capBytes: number;
  size: number;
  compileMs: number;
}

interface KindRules {
  host: HostSignatures;
  policy: StubPolicy;
  callbacks: Readonly<Record<string, ReturnType<typeof sig>>>;
}

const RULES: Readonly<Record<CoreAppKind, KindRules>> = {
  'proxy-wasm': {
    host: { env: PROXY_HOST_SIGNATURES, [WASI_MODULE]: WASI_SIGNATURES, [WASI_LEGACY_MODULE]: WASI_SIGNATURES },
    policy: {
      stubbed: { env: Status.UNIMPLEMENTED, [WASI_MODULE]: Errno.NOSYS, [WASI_LEGACY_MODULE]: Errno.NOSYS },
      describeAllowed: `a proxy-wasm filter may import only from env, ${WASI_MODULE} and ${WASI_LEGACY_MODULE}`,
    },
    callbacks: PROXY_CALLBACK_SIGNATURES,
  },
  'wasi-command': {
    host: { [WASI_MODULE]: WASI_SIGNATURES },
    policy: { stubbed: { [WASI_MODULE]: Errno.NOSYS }, describeAllowed: `a WASI command may import only from ${WASI_MODULE}` },
    callbacks: { _start: sig(0, []) },
  },
};

export class ModuleCache {
  private readonly cache: Lru<string, Promise<PreparedModule>>;

  constructor(
    capacity: number,
    private readonly shape: ModuleShapeLimits,
  ) {
    this.cache = new Lru(capacity);
  }

  /** Concurrent requests for the same module share one preparation; a failed one is not cached. */
  get(artifact: ArtifactRef, kind: AppKind, capPages: number): Promise<PreparedModule> {
    const key = `${kind}:${artifact.sha256}:${capPages}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const prepared = prepare(key, artifact, kind, capPages, this.shape);
    this.cache.set(key, prepared);
    prepared.catch(() => this.cache.delete(key));
    return prepared;
  }
}

async function prepare(key: string, artifact: ArtifactRef, kind: AppKind, capPages: number, shape: ModuleShapeLimits): Promise<PreparedModule> {
  const bytes = limitModuleShape(setMemoryMaximum(await artifact.load(), capPages), shape);
  const info = inspectModule(bytes, { validate: false });
  const fits = checkKind(info, kind);
  if (!fits.ok || !isCoreKind(kind)) throw unprocessable('module_not_runnable', `the module cannot run as a ${kind}: ${fits.ok ? 'not a core module kind' : fits.problems.join(' ')}`);
  const rules = RULES[kind];
  const signatures = readSignatures(bytes);
  const problems = exportProblems(signatures.exports, rules.callbacks);
  if (problems.length > 0) throw unprocessable('module_not_runnable', `the module cannot run as a ${kind}: ${problems.join('; ')}`);
  const plan = planImports(signatures, rules.host, rules.policy);
  const pooled = importOwnMemory(bytes, POOLED_MEMORY_IMPORT);
  const started = performance.now();
  const module = await compile(pooled?.bytes ?? bytes);
  const maxPages = info.memories[0]?.max ?? capPages;
  const memory = pooled ? { memory: pooled.memory } : {};
  return { key, sha256: artifact.sha256, kind, module, plan, ...memory, capBytes: maxPages * PAGE_SIZE, size: bytes.length, compileMs: performance.now() - started };
}

async function compile(bytes: Uint8Array<ArrayBuffer>): Promise<WebAssembly.Module> {
  try {
    return await WebAssembly.compile(bytes);
  } catch (error) {
    throw unprocessable('invalid_wasm', `the module does not compile: ${error instanceof Error ? error.message : String(error)}`);
  }
}
