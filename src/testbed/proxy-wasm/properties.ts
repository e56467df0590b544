/**
 * Properties (proxy_get_property): Envoy's attribute names, encoded as Envoy
 * encodes them — strings as UTF-8, integers as 8-byte little-endian, booleans
 * as one byte, maps as serialized header maps — so filters written against
 * Envoy read the same bytes here.
 *
 * A path arrives as segments separated by NUL bytes ("request\0path"); a
 * single segment with dots ("request.path") is accepted too, since some SDKs
 * send that.
 */
import type { StreamState } from './stream.ts';
import type { PluginVm } from './vm.ts';
import { serializePairs } from './header-map.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

export function parsePath(bytes: Uint8Array): string[] {
  const text = decoder.decode(bytes);
  const segments = text.includes('\0') ? text.split('\0') : text.split('.');
  return segments.filter((segment) => segment !== '');
}

const str = (value: string): Uint8Array => encoder.encode(value);

function int(value: number | bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, BigInt(value), true);
  return out;
}

const bool = (value: boolean): Uint8Array => Uint8Array.of(value ? 1 : 0);

type Resolver = (vm: PluginVm, stream: StreamState | undefined) => Uint8Array | undefined;

const fromStream =
  (read: (stream: StreamState) => Uint8Array | undefined): Resolver =>
  (_vm, stream) =>
    stream ? read(stream) : undefined;

function splitPath(stream: StreamState): { path: string; query: string } {
  const full = stream.request.headers.get(':path') ?? stream.originalRequest.path;
  const at = full.indexOf('?');
  return at === -1 ? { path: full, query: '' } : { path: full.slice(0, at), query: full.slice(at + 1) };
}

const PROPERTIES: Readonly<Record<string, Resolver>> = {
  'request.path': fromStream((s) => str(s.request.headers.get(':path') ?? s.originalRequest.path)),
  'request.url_path': fromStream((s) => str(splitPath(s).path)),
  'request.query': fromStream((s) => str(splitPath(s).query)),
  'request.host': fromStream((s) => str(s.request.headers.get(':authority') ?? s.originalRequest.authority)),
  'request.scheme': fromStream((s) => str(s.request.headers.get(':scheme') ?? s.originalRequest.scheme)),
  'request.method': fromStream((s) => str(s.request.headers.get(':method') ?? s.originalRequest.method)),
  'request.headers': fromStream((s) => serializePairs(s.request.headers.pairs())),
  'request.referer': fromStream((s) => optional(s.request.headers.get('referer'))),
  'request.useragent': fromStream((s) => optional(s.request.headers.get('user-agent'))),
  'request.id': fromStream((s) => str(s.request.headers.get('x-request-id') ?? s.connection.requestId)),
  'request.protocol': fromStream((s) => str(s.connection.protocol)),
  'request.time': fromStream((s) => int(BigInt(s.startedAt) * 1_000_000n)),
  'request.size': fromStream((s) => int(s.request.body.length)),
  'request.total_size': fromStream((s) => int(s.request.body.length + s.request.headers.serialize().length)),
  'response.code': fromStream((s) => (s.response ? int(Number(s.response.headers.get(':status') ?? 0)) : undefined)),
  'response.code_details': fromStream((s) => (s.response ? str(s.localResponse?.details || 'via_upstream') : undefined)),
  'response.headers': fromStream((s) => (s.response ? serializePairs(s.response.headers.pairs()) : undefined)),
  'response.trailers': fromStream((s) => (s.response ? serializePairs(s.response.trailers.pairs()) : undefined)),
  'response.size': fromStream((s) => (s.response ? int(s.response.body.length) : undefined)),
  'response.flags': fromStream((s) => (s.response ? int(0) : undefined)),
  'source.address': fromStream((s) => str(`${s.connection.sourceAddress}:${s.connection.sourcePort}`)),
  'source.port': fromStream((s) => int(s.connection.sourcePort)),
  'destination.address': fromStream((s) => str(`${s.connection.destinationAddress}:${s.connection.destinationPort}`)),
  'destination.port': fromStream((s) => int(s.connection.destinationPort)),
  'connection.id': fromStream((s) => int(s.id)),
  'connection.mtls': fromStream(() => bool(false)),
  plugin_name: (vm) => str(vm.spec.plugin.name),
  plugin_root_id: (vm) => str(vm.spec.plugin.rootId),
  plugin_vm_id: (vm) => str(vm.spec.plugin.vmId),
  'kiln.version_id': (vm) => str(vm.spec.plugin.versionId),
  'kiln.version': (vm) => str(vm.spec.plugin.version),
  'kiln.application_id': (vm) => str(vm.spec.plugin.applicationId),
};

function optional(value: string | undefined): Uint8Array | undefined {
  return value === undefined ? undefined : str(value);
}

/** Built-in properties cannot be set; anything else can (it is the filter's own state). */
export function isBuiltIn(path: string[]): boolean {
  const joined = path.join('.');
  return joined in PROPERTIES || joined.startsWith('request.headers.') || joined.startsWith('response.headers.');
}

export function getProperty(vm: PluginVm, stream: StreamState | undefined, path: string[]): Uint8Array | undefined {
  const joined = path.join('.');
  const builtIn = PROPERTIES[joined];
  if (builtIn) return builtIn(vm, stream);
  const header = headerProperty(stream, path);
  if (header !== undefined) return header;
  const key = path.join('\0');
  return stream?.properties.get(key) ?? vm.rootProperties.get(key);
}

/** request.headers.<name> and response.headers.<name>: one header's value. */
function headerProperty(stream: StreamState | undefined, path: string[]): Uint8Array | undefined {
  if (!stream || path.length !== 3 || path[1] !== 'headers') return undefined;
  const map = path[0] === 'request' ? stream.request.headers : path[0] === 'response' ? stream.response?.headers : undefined;
  return optional(map?.get(path[2] ?? ''));
}
