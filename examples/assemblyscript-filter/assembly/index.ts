// A proxy-wasm HTTP filter on Kiln's AssemblyScript SDK (`kiln-proxy-wasm`,
// provided by Kiln to every build): adds `x-kiln: hello` to every response
// and logs that it did.
import { Action, HttpContext, LogLevel, RootContext, log, setRootContext } from 'kiln-proxy-wasm';

// The ABI callbacks (proxy_on_*, proxy_on_memory_allocate, the ABI version marker).
export * from 'kiln-proxy-wasm/exports';

class AddHeader extends HttpContext {
  onResponseHeaders(_numHeaders: u32, _endOfStream: bool): Action {
    this.responseHeaders.add('x-kiln', 'hello');
    log(LogLevel.Info, 'assemblyscript-filter: added x-kiln to the response of context ' + this.contextId.toString());
    return Action.Continue;
  }
}

class Root extends RootContext {
  onVmStart(_vmConfigurationSize: u32): bool {
    log(LogLevel.Info, 'assemblyscript-filter: started');
    return true;
  }

  createHttpContext(contextId: u32): HttpContext {
    return new AddHeader(contextId, this);
  }
}

// Top-level statements run once, in _initialize.
setRootContext((contextId: u32): RootContext => new Root(contextId));
