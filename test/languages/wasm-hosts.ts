/**
 * A recording stub of the Proxy-Wasm host, for checking built filters in
 * tests. Its host functions are plain JavaScript, so the filter runs in V8's
 * Wasm sandbox and nothing else; WASI commands, whose host is native code,
 * run in a process of their own (test/support/wasi-run.ts).
 */
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
