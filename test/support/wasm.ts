/**
 * Builds tiny, valid Wasm modules for tests of the evaluator and the worker
 * protocol: every exported function has type () -> () and an empty body.
 */
export function uleb(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return out;
}

export const name = (text: string) => {
  const bytes = [...Buffer.from(text, 'utf8')];
  return [...uleb(bytes.length), ...bytes];
};
export const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
export const vector = (items: number[][]) => [...uleb(items.length), ...items.flat()];

export function moduleWithExports(functionExports: string[], options: { memory?: boolean; imports?: Array<[string, string]> } = {}): Buffer {
  const imports = options.imports ?? [];
  const bytes = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  bytes.push(...section(1, vector([[0x60, 0x00, 0x00]])));
  if (imports.length > 0) bytes.push(...section(2, vector(imports.map(([module, field]) => [...name(module), ...name(field), 0x00, 0x00]))));
  bytes.push(...section(3, vector(functionExports.map(() => [0x00]))));
  if (options.memory !== false) bytes.push(...section(5, vector([[0x00, 0x01]])));
  const exports = functionExports.map((field, index) => [...name(field), 0x00, ...uleb(imports.length + index)]);
  if (options.memory !== false) exports.push([...name('memory'), 0x02, 0x00]);
  bytes.push(...section(7, vector(exports)));
  bytes.push(...section(10, vector(functionExports.map(() => [0x02, 0x00, 0x0b]))));
  return Buffer.from(bytes);
}

export const proxyWasmModule = () => moduleWithExports(['proxy_abi_version_0_2_1', 'proxy_on_memory_allocate', 'proxy_on_context_create', '_initialize']);
export const wasiCommandModule = () => moduleWithExports(['_start'], { imports: [['wasi_snapshot_preview1', 'proc_exit']] });

/**
 * A valid module of about `totalBytes` whose function bodies are long runs of
 * `nop`: costly to validate, cheap to build (V8 caps one body near 7 MB).
 */
export function bulkyModule(totalBytes: number): Buffer {
  const bodyBytes = 4 * 1024 * 1024;
  const count = Math.max(1, Math.ceil(totalBytes / bodyBytes));
  const body = Buffer.concat([Buffer.from([0x00]), Buffer.alloc(bodyBytes, 0x01), Buffer.from([0x0b])]);
  const entry = Buffer.concat([Buffer.from(uleb(body.length)), body]);
  const code = Buffer.concat([Buffer.from(uleb(count)), ...Array.from({ length: count }, () => entry)]);
  return Buffer.concat([
    Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]),
    Buffer.from(section(1, vector([[0x60, 0x00, 0x00]]))),
    Buffer.from(section(3, vector(Array.from({ length: count }, () => [0x00])))),
    Buffer.from([0x0a, ...uleb(code.length)]),
    code,
  ]);
}
