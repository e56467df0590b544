/**
 * The program that measures a module's start-up, run by /usr/bin/node inside
 * the sandbox (see startup.ts for why there). It is plain JavaScript kept as
 * text: it is written into the measurement volume next to the module, so the
 * sandbox needs no view of Kiln's sources or node_modules.
 *
 * argv: <kind> <module path> <"init" | "host"> <stdin path or ""> <go path> <wait ms>
 *   init: also call the module's `wizer-initialize` export, when it has one,
 *         as part of initialization — the work Wizer moves to build time, so
 *         the numbers show what pre-initialization bought even when the first
 *         call's input would not reach that work.
 *   host: only what a host does (the bench uses it with a real request).
 * It first writes <go path>.ready (the sandbox has set up the volume, so the
 * stage may now write into it), then waits at most <wait ms> for the go
 * file: the stage may start the process before the module exists
 * (startup.ts, prepareMeasurement), so that node's own start overlaps the
 * steps. "measure" in it: measure; anything else: exit without measuring.
 * Every measurement goes through this wait, the original's too (its go file
 * is there before the start), so both variants are measured by the same
 * code after the same kind of start; the timed phases never include node's
 * start or the wait.
 * It prints one line `KILN_STARTUP {json}`: {ok, compileMs, instantiateMs,
 * initMs, firstCallMs, exitCode?} or {ok: false, error}. The module's own
 * stdout/stderr go to /dev/null, so it cannot forge that line.
 *
 * Phases:
 *   wasi-command: init = `wizer-initialize` (init mode); first call = `_start`
 *                 with the given stdin (empty by default).
 *   proxy-wasm:   init = `_initialize`, `wizer-initialize` (init mode), root
 *                 context create, vm start, configure; first call = an HTTP
 *                 context, request headers, response headers. The host is a
 *                 stub: `proxy_get_*` answer NotFound, other calls Ok, except
 *                 the getters a real host always answers Ok (the official
 *                 Rust SDK panics on any other status): the clock (now), the
 *                 log level (info) and header maps (empty, in a buffer the
 *                 module allocates).
 */
export const STARTUP_SCRIPT = String.raw`
import { existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const [kind, file, mode, inputFile, goFile, waitMs] = process.argv.slice(2);
const WAIT_MS = Number(waitMs) || 0;
const POLL_MS = 2;
const INIT = 'wizer-initialize';
const say = (value) => process.stdout.write('KILN_STARTUP ' + JSON.stringify(value) + '\n');
const since = (start) => Math.round((performance.now() - start) * 1000) / 1000;
const exported = (instance, name) => (typeof instance.exports[name] === 'function' ? instance.exports[name] : undefined);

function newWasi() {
  const nul = () => openSync('/dev/null', 'r+');
  const stdin = inputFile ? openSync(inputFile, 'r') : nul();
  return new WASI({ version: 'preview1', args: ['app'], env: {}, returnOnExit: true, stdin, stdout: nul(), stderr: nul() });
}

// Set once the module is instantiated: the stub's getters write their answers into its memory.
let guest;
const OK = 0;
const NOT_FOUND = 1;
const LOG_LEVEL_INFO = 2;
const view = () => new DataView(guest.exports.memory.buffer);

/** An empty serialized header map (a zero pair count), in memory the module allocated; 0 when it cannot allocate. */
function emptyMap() {
  const allocate = exported(guest, 'proxy_on_memory_allocate') ?? exported(guest, 'malloc');
  const at = allocate ? allocate(4) : 0;
  if (at) view().setUint32(at, 0, true);
  return at;
}

const ALWAYS_OK = {
  proxy_get_current_time_nanoseconds: (timePtr) => {
    view().setBigUint64(timePtr, BigInt(Date.now()) * 1000000n, true);
    return OK;
  },
  proxy_get_log_level: (levelPtr) => {
    view().setUint32(levelPtr, LOG_LEVEL_INFO, true);
    return OK;
  },
  proxy_get_header_map_pairs: (_map, dataPtr, sizePtr) => {
    const at = emptyMap();
    if (!at) return NOT_FOUND;
    view().setUint32(dataPtr, at, true);
    view().setUint32(sizePtr, 4, true);
    return OK;
  },
};

function proxyStub(module, name) {
  // A call from the module's start function comes before there is an instance to write into.
  if (module === 'env' && ALWAYS_OK[name]) return (...args) => (guest ? ALWAYS_OK[name](...args) : NOT_FOUND);
  if (module === 'env' && name.startsWith('proxy_get_')) return () => NOT_FOUND;
  return () => OK;
}

function unsupported(module, name) {
  return () => {
    throw new Error('the module called ' + module + '.' + name + ', which the measuring host does not provide');
  };
}

function importsFor(module, wasi) {
  const provided = wasi.getImportObject();
  const imports = {};
  for (const wanted of WebAssembly.Module.imports(module)) {
    if (wanted.kind !== 'function') throw new Error('it imports a ' + wanted.kind + ' (' + wanted.module + '.' + wanted.name + ')');
    const given = provided[wanted.module] && provided[wanted.module][wanted.name];
    const stub = kind === 'proxy-wasm' ? proxyStub : unsupported;
    (imports[wanted.module] ??= {})[wanted.name] = given ?? stub(wanted.module, wanted.name);
  }
  return imports;
}

function commandPhases(instance, wasi) {
  const start = exported(instance, '_start');
  if (!start) throw new Error('no _start export');
  const init = mode === 'init' ? exported(instance, INIT) : undefined;
  const times = { initMs: 0, firstCallMs: 0 };
  // wasi.start takes any object with exports; wrapping _start lets us time init and main apart.
  const exitCode = wasi.start({
    exports: {
      memory: instance.exports.memory,
      _start() {
        let started = performance.now();
        try {
          if (init) init();
        } finally {
          times.initMs = since(started);
        }
        started = performance.now();
        try {
          start();
        } finally {
          times.firstCallMs = since(started);
        }
      },
    },
  });
  return { ...times, exitCode };
}

function filterPhases(instance, wasi) {
  const call = (name, ...args) => {
    const fn = exported(instance, name);
    if (fn) fn(...args);
  };
  const times = { initMs: 0, firstCallMs: 0 };
  wasi.initialize({
    exports: {
      memory: instance.exports.memory,
      _initialize() {
        const started = performance.now();
        try {
          call('_initialize');
          if (mode === 'init') call(INIT);
          call('proxy_on_context_create', 1, 0);
          call('proxy_on_vm_start', 1, 0);
          call('proxy_on_configure', 1, 0);
        } finally {
          times.initMs = since(started);
        }
      },
    },
  });
  const started = performance.now();
  call('proxy_on_context_create', 2, 1);
  call('proxy_on_request_headers', 2, 0, 1);
  call('proxy_on_response_headers', 2, 0, 1);
  times.firstCallMs = since(started);
  return times;
}

// A stat every POLL_MS: cheap, and works on any filesystem the sandbox binds (no inotify needed).
async function waitForGo() {
  // The run has started (the sandbox has handed it the volume): from now on the stage may write into it.
  writeFileSync(goFile + '.ready', '');
  const deadline = performance.now() + WAIT_MS;
  while (!existsSync(goFile)) {
    if (performance.now() > deadline) return 'no module within ' + WAIT_MS + ' ms';
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  return readFileSync(goFile, 'utf8') === 'measure' ? 'go' : 'released';
}

function measure() {
  try {
    const bytes = readFileSync(file);
    let started = performance.now();
    const module = new WebAssembly.Module(bytes);
    const compileMs = since(started);
    const wasi = newWasi();
    const imports = importsFor(module, wasi);
    started = performance.now();
    const instance = new WebAssembly.Instance(module, imports);
    const instantiateMs = since(started);
    guest = instance;
    const phases = kind === 'proxy-wasm' ? filterPhases(instance, wasi) : commandPhases(instance, wasi);
    say({ ok: true, compileMs, instantiateMs, ...phases });
  } catch (error) {
    say({ ok: false, error: String((error && error.message) || error).slice(0, 300) });
  }
}

const go = await waitForGo();
if (go === 'go') measure();
else say({ ok: false, skipped: true, error: go });
`;
