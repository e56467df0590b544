/**
 * Minimal hosts for checking built modules in tests: a WASI runner for
 * functions and a recording stub of the Proxy-Wasm host for filters. Running
 * Wasm in V8 is fine on the host (it is V8's sandbox); only native user code
 * must stay in the build sandbox.
 */
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WASI } from 'node:wasi';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a wasi-command with `input` on stdin, no preopened directories, no environment. */
export async function runWasiCommand(module: Uint8Array, input: string): Promise<CommandResult> {
  const dir = await mkdtemp(join(tmpdir(), 'kiln-wasi-'));
  writeFileSync(join(dir, 'stdin'), input);
  const fds = {
    stdin: openSync(join(dir, 'stdin'), 'r'),
    stdout: openSync(join(dir, 'stdout'), 'w'),
    stderr: openSync(join(dir, 'stderr'), 'w'),
  };
  try {
    const wasi = new WASI({ version: 'preview1', args: ['app'], env: {}, ...fds, returnOnExit: true });
    const compiled = await WebAssembly.compile(new Uint8Array(module));
    const instance = await WebAssembly.instantiate(compiled, wasi.getImportObject() as WebAssembly.Imports);
    const exitCode = wasi.start(instance);
    return { exitCode, stdout: readFileSync(join(dir, 'stdout'), 'utf8'), stderr: readFileSync(join(dir, 'stderr'), 'utf8') };
  } finally {
    for (const fd of Object.values(fds)) closeSync(fd);
    await rm(dir, { recursive: true, force: true });
  }
}

export interface HeaderAdded {
  map: number;
  key: string;
  value: string;
}

const WASI_ENOSYS = 52;

/** Records what a filter asks of its host; every call answers Ok (0). */
export class StubProxyHost {
  readonly calls: string[] = [];
  readonly logs: string[] = [];
  readonly headersAdded: HeaderAdded[] = [];
  private memory?: WebAssembly.Memory;

  /** Import object for exactly the functions the module imports. */
  imports(module: WebAssembly.Module): WebAssembly.Imports {
    const imports: Record<string, Record<string, (...args: number[]) => number>> = {};
    for (const descriptor of WebAssembly.Module.imports(module)) {
      if (descriptor.kind !== 'function') continue;
      const namespace = (imports[descriptor.module] ??= {});
      namespace[descriptor.name] =
        descriptor.module === 'env' ? this.hostFunction(descriptor.name) : this.unsupported(`${descriptor.module}.${descriptor.name}`);
    }
    return imports;
  }

  attach(instance: WebAssembly.Instance): void {
    const memory = instance.exports['memory'];
    if (!(memory instanceof WebAssembly.Memory)) throw new Error('the filter exports no memory');
    this.memory = memory;
  }

  private hostFunction(name: string): (...args: number[]) => number {
    return (...args) => {
      this.calls.push(name);
      if (name === 'proxy_log') this.logs.push(this.read(args[1], args[2]));
      if (name === 'proxy_add_header_map_value') {
        this.headersAdded.push({ map: args[0] ?? -1, key: this.read(args[1], args[2]), value: this.read(args[3], args[4]) });
      }
      return 0;
    };
  }

  /** WASI calls a filter may make (Rust's std imports a few): not supported here. */
  private unsupported(name: string): () => number {
    return () => {
      this.calls.push(name);
      return WASI_ENOSYS;
    };
  }

  private read(pointer: number | undefined, length: number | undefined): string {
    if (this.memory === undefined || pointer === undefined || length === undefined) throw new Error('memory not attached');
    return new TextDecoder().decode(new Uint8Array(this.memory.buffer, pointer >>> 0, length >>> 0));
  }
}

type ExportedFunction = (...args: number[]) => unknown;

/**
 * Drives a filter through one HTTP exchange the way a proxy-wasm host does:
 * _initialize, root context (vm start, configure), an HTTP context, request
 * headers, response headers.
 */
export async function runFilterExchange(bytes: Uint8Array): Promise<StubProxyHost> {
  const host = new StubProxyHost();
  const module = await WebAssembly.compile(new Uint8Array(bytes));
  const instance = await WebAssembly.instantiate(module, host.imports(module));
  host.attach(instance);
  const call = (name: string, ...args: number[]): void => {
    const exported = instance.exports[name];
    if (typeof exported === 'function') (exported as ExportedFunction)(...args);
  };
  call('_initialize');
  call('proxy_on_context_create', 1, 0);
  call('proxy_on_vm_start', 1, 0);
  call('proxy_on_configure', 1, 0);
  call('proxy_on_context_create', 2, 1);
  call('proxy_on_request_headers', 2, 0, 0);
  call('proxy_on_response_headers', 2, 0, 1);
  call('proxy_on_done', 2);
  call('proxy_on_delete', 2);
  return host;
}
