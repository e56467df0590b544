// A filter written exactly as the SDK's README shows, plus a local response:
// requests to /blocked are answered by the filter itself with a 403.
export * from "@solo-io/proxy-runtime/proxy"; // the ABI callbacks the host calls
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context, send_local_response, log, LogLevelValues, HeaderPair, GrpcStatusValues } from "@solo-io/proxy-runtime";

class AddHeaderRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new AddHeader(context_id, this);
  }
}

class AddHeader extends Context {
  constructor(context_id: u32, root_context: AddHeaderRoot) {
    super(context_id, root_context);
  }

  onRequestHeaders(_headers: u32, _endOfStream: bool): FilterHeadersStatusValues {
    const path = stream_context.headers.request.get(":path");
    if (path == "/blocked") {
      log(LogLevelValues.info, "proxy-runtime filter: blocked " + path);
      send_local_response(403, "blocked by the filter", String.UTF8.encode("blocked\n"), new Array<HeaderPair>(), GrpcStatusValues.Ok);
      return FilterHeadersStatusValues.StopIteration;
    }
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(_headers: u32, _endOfStream: bool): FilterHeadersStatusValues {
    const root_context = this.root_context;
    const value = root_context.getConfiguration() == "" ? "world!" : root_context.getConfiguration();
    stream_context.headers.response.add("hello", value);
    log(LogLevelValues.info, "proxy-runtime filter: added hello: " + value);
    return FilterHeadersStatusValues.Continue;
  }
}

// Envoy picks the root context by the plugin's configured root_id ("add_header" here);
// Kiln's test bed passes preview.rootId of the version's config, empty when the config
// names none (as in Envoy), so register under both.
registerRootContext((context_id: u32) => { return new AddHeaderRoot(context_id); }, "add_header");
registerRootContext((context_id: u32) => { return new AddHeaderRoot(context_id); }, "");
