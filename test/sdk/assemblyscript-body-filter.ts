/**
 * The AssemblyScript test filter on kiln-proxy-wasm, kept as strings: it is
 * AssemblyScript, not TypeScript, and must not be type-checked with Kiln's
 * own sources (tsconfig includes test/).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const AS_BODY_FILTER_PACKAGE_JSON = `{
  "name": "assemblyscript-body-filter",
  "version": "0.1.0",
  "private": true,
  "description": "A test filter on kiln-proxy-wasm: properties, header and body helpers, a local response."
}
`;

export const AS_BODY_FILTER_SOURCE = `// A test filter on kiln-proxy-wasm: properties, header and body helpers,
// and a local response. Kiln detects a filter from the SDK import.
import { Action, Header, HttpContext, LogLevel, RootContext, getPropertyString, log, setHttpContext } from 'kiln-proxy-wasm';

export * from 'kiln-proxy-wasm/exports';

class BodyFilter extends HttpContext {
  /** A local response also goes through the response callbacks: leave it alone. */
  blocked: bool = false;

  onRequestHeaders(_numHeaders: u32, _endOfStream: bool): Action {
    const found = getPropertyString(['request', 'path']);
    const path = found === null ? '' : found;
    if (path.startsWith('/blocked')) {
      this.sendLocalResponse(403, 'blocked by assemblyscript-body-filter', [new Header('x-blocked-by', 'as-sdk')]);
      log(LogLevel.Warn, 'assemblyscript-body-filter: blocked ' + path);
      this.blocked = true;
      return Action.Pause;
    }
    this.requestHeaders.set('x-path-seen', path);
    this.requestHeaders.remove('x-remove-me');
    log(LogLevel.Info, 'assemblyscript-body-filter: ' + this.requestHeaders.all().length.toString() + ' request headers');
    return Action.Continue;
  }

  onRequestBody(_bodySize: u32, endOfStream: bool): Action {
    if (!endOfStream) return Action.Pause;
    const body = this.requestBody.text();
    this.requestBody.replaceText('[as] ' + (body === null ? '' : body));
    return Action.Continue;
  }

  onResponseHeaders(_numHeaders: u32, _endOfStream: bool): Action {
    this.responseHeaders.add('x-as-sdk', 'yes');
    return Action.Continue;
  }

  onResponseBody(_bodySize: u32, endOfStream: bool): Action {
    if (this.blocked) return Action.Continue;
    if (!endOfStream) return Action.Pause;
    const body = this.responseBody.text();
    if (body !== null) this.responseBody.replaceText(body.toUpperCase());
    return Action.Continue;
  }
}

setHttpContext((contextId: u32, root: RootContext): HttpContext => new BodyFilter(contextId, root));
`;

/** Writes the project (package.json, assembly/index.ts) into `directory`. */
export async function writeAssemblyScriptBodyFilter(directory: string): Promise<void> {
  await mkdir(join(directory, 'assembly'), { recursive: true });
  await writeFile(join(directory, 'package.json'), AS_BODY_FILTER_PACKAGE_JSON);
  await writeFile(join(directory, 'assembly', 'index.ts'), AS_BODY_FILTER_SOURCE);
}
