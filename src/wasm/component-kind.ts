/**
 * Does a component fit the `http-component` kind? Pure function of the
 * component's outer imports and exports (see component.ts), so it can run in
 * the API process or in whatever worker the evaluator moves to.
 *
 * Rules (and why):
 *  - exports `wasi:http/incoming-handler@0.2.N` as an instance: it is the
 *    entry point every wasi:http host (wasmtime serve, Spin, Fastly, the test
 *    bed) calls per request. Nothing else may be exported: the
 *    `wasi:http/proxy` world exports only that, and an edge host would never
 *    call anything more.
 *  - imports only instances of WASI 0.2 interfaces (`@0.2.N`, any patch: 0.2
 *    patch releases only add `@since` annotations), from two lists:
 *      * what the `wasi:http/proxy` world allows: wasi:http/{types,
 *        outgoing-handler}, wasi:io/{poll,error,streams},
 *        wasi:clocks/{monotonic-clock,wall-clock}, wasi:random/random,
 *        wasi:cli/{stdin,stdout,stderr};
 *      * what StarlingMonkey's preview1 adapter adds to every component
 *        componentize-js builds (measured on componentize-js 0.23.0):
 *        wasi:cli/terminal-{input,output,stdin,stdout,stderr} and
 *        wasi:filesystem/{types,preopens}. Hosts give these no capability:
 *        the test bed preopens no directory and reports no terminal.
 *    Anything else (sockets, environment, exit, a custom interface, a bare
 *    function) is refused by name: an edge host does not provide it.
 *  - at most MAX_COMPONENT_BYTES: a component is loaded, transpiled and
 *    compiled whole by the test bed and by edge servers.
 */
import type { ComponentExtern, ComponentInfo } from './component.ts';
import type { KindCheck } from './kind.ts';

/** Default size limit of an http-component (a StarlingMonkey build is 13–14 MB). */
export const MAX_COMPONENT_BYTES = 32 * 1024 ** 2;

export const INCOMING_HANDLER = 'wasi:http/incoming-handler';

export const PROXY_WORLD_IMPORTS: readonly string[] = [
  'wasi:http/types',
  'wasi:http/outgoing-handler',
  'wasi:io/poll',
  'wasi:io/error',
  'wasi:io/streams',
  'wasi:clocks/monotonic-clock',
  'wasi:clocks/wall-clock',
  'wasi:random/random',
  'wasi:cli/stdin',
  'wasi:cli/stdout',
  'wasi:cli/stderr',
];

export const ADAPTER_IMPORTS: readonly string[] = [
  'wasi:cli/terminal-input',
  'wasi:cli/terminal-output',
  'wasi:cli/terminal-stdin',
  'wasi:cli/terminal-stdout',
  'wasi:cli/terminal-stderr',
  'wasi:filesystem/types',
  'wasi:filesystem/preopens',
];

const ALLOWED_IMPORTS = new Set([...PROXY_WORLD_IMPORTS, ...ADAPTER_IMPORTS]);
const WASI_02_VERSION = /^0\.2\.\d{1,4}$/;

export interface ComponentKindOptions {
  maxBytes?: number;
}

export function checkComponentKind(info: ComponentInfo, options: ComponentKindOptions = {}): KindCheck {
  const maxBytes = options.maxBytes ?? MAX_COMPONENT_BYTES;
  const problems: string[] = [];
  if (info.size > maxBytes) problems.push(`It is ${info.size} bytes, more than the ${maxBytes}-byte limit for an http-component.`);
  problems.push(...exportProblems(info.exports));
  problems.push(...info.imports.flatMap(importProblem));
  return problems.length === 0 ? { ok: true } : { ok: false, problems };
}

/** `wasi:http/types@0.2.10` → { interface: 'wasi:http/types', version: '0.2.10' }. */
export function splitVersion(name: string): { interfaceName: string; version: string | undefined } {
  const at = name.lastIndexOf('@');
  return at < 0 ? { interfaceName: name, version: undefined } : { interfaceName: name.slice(0, at), version: name.slice(at + 1) };
}

function exportProblems(exports: readonly ComponentExtern[]): string[] {
  const problems: string[] = [];
  const handler = exports.find((e) => splitVersion(e.name).interfaceName === INCOMING_HANDLER);
  if (handler === undefined) {
    problems.push(`It does not export ${INCOMING_HANDLER}@0.2.x, the interface an HTTP host calls for each request (a fetch-event handler or an exported incomingHandler).`);
  } else {
    problems.push(...versionProblems(handler, 'exports'));
    if (handler.kind !== 'instance') problems.push(`Its export ${handler.name} is a ${handler.kind}, not an instance of the interface.`);
  }
  for (const other of exports.filter((e) => e !== handler)) {
    problems.push(`It exports ${other.name}, but an http-component (the wasi:http/proxy world) exports only ${INCOMING_HANDLER}.`);
  }
  return problems;
}

function importProblem(entry: ComponentExtern): string[] {
  const { interfaceName } = splitVersion(entry.name);
  if (!ALLOWED_IMPORTS.has(interfaceName)) {
    return [`It imports ${entry.name}, which an HTTP edge host does not provide (allowed: the wasi:http/proxy world's interfaces and the WASI adapter's terminal and filesystem stubs).`];
  }
  const problems = versionProblems(entry, 'imports');
  if (entry.kind !== 'instance') problems.push(`It imports ${entry.name} as a ${entry.kind}, not as an instance of the interface.`);
  return problems;
}

function versionProblems(entry: ComponentExtern, verb: 'imports' | 'exports'): string[] {
  const { version } = splitVersion(entry.name);
  if (version !== undefined && WASI_02_VERSION.test(version)) return [];
  return [`It ${verb} ${entry.name}${version === undefined ? ' without a version' : ''}; only WASI 0.2 (@0.2.x) interfaces are supported.`];
}
