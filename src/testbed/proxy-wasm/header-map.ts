/**
 * HTTP fields as the ABI sees them: an ordered list of (key, value) pairs with
 * lower-case keys (Envoy's convention, which filters rely on: they look up
 * ":path" and "content-type", never "Content-Type"), plus the ABI's binary
 * serialization of such a list.
 */
export type HeaderPairs = Array<[string, string]>;

export class HeaderMap {
  private entries: HeaderPairs;

  constructor(pairs: readonly (readonly [string, string])[] = []) {
    this.entries = pairs.map(([key, value]) => [key.toLowerCase(), value]);
  }

  get length(): number {
    return this.entries.length;
  }

  pairs(): HeaderPairs {
    return this.entries.map(([key, value]) => [key, value]);
  }

  /** Several values of one key are joined with "," as Envoy does. */
  get(key: string): string | undefined {
    const wanted = key.toLowerCase();
    const values = this.entries.filter(([k]) => k === wanted).map(([, value]) => value);
    return values.length === 0 ? undefined : values.join(',');
  }

  add(key: string, value: string): void {
    this.entries.push([key.toLowerCase(), value]);
  }

  /** Replaces every value of the key with one (adds it when absent), keeping the first one's position. */
  replace(key: string, value: string): void {
    const wanted = key.toLowerCase();
    const first = this.entries.findIndex(([k]) => k === wanted);
    if (first === -1) {
      this.entries.push([wanted, value]);
      return;
    }
    this.entries = this.entries.flatMap((entry, i): HeaderPairs => (entry[0] !== wanted ? [entry] : i === first ? [[wanted, value]] : []));
  }

  remove(key: string): void {
    const wanted = key.toLowerCase();
    this.entries = this.entries.filter(([k]) => k !== wanted);
  }

  /** Pairs and key + value bytes, as the header limits count them. */
  size(): MapSize {
    return pairsSize(this.entries);
  }

  /** The size once every value of `key` is gone. */
  sizeWithout(key: string): MapSize {
    const wanted = key.toLowerCase();
    return pairsSize(this.entries.filter(([k]) => k !== wanted));
  }

  setAll(pairs: readonly (readonly [string, string])[]): void {
    this.entries = pairs.map(([key, value]) => [key.toLowerCase(), value]);
  }

  serialize(): Uint8Array {
    return serializePairs(this.entries);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8');

export interface MapSize {
  count: number;
  bytes: number;
}

export function pairsSize(pairs: readonly (readonly [string, string])[]): MapSize {
  return { count: pairs.length, bytes: pairs.reduce((n, [key, value]) => n + Buffer.byteLength(key) + Buffer.byteLength(value), 0) };
}

/**
 * count (u32 LE), then (key length, value length) per pair (u32 LE each),
 * then each key and value followed by a NUL byte.
 */
export function serializePairs(pairs: readonly (readonly [string, string])[]): Uint8Array {
  const encoded = pairs.map(([key, value]) => [encoder.encode(key), encoder.encode(value)] as const);
  const size = 4 + encoded.length * 8 + encoded.reduce((n, [k, v]) => n + k.length + v.length + 2, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, encoded.length, true);
  let data = 4 + encoded.length * 8;
  encoded.forEach(([key, value], i) => {
    view.setUint32(4 + i * 8, key.length, true);
    view.setUint32(8 + i * 8, value.length, true);
    out.set(key, data);
    data += key.length + 1;
    out.set(value, data);
    data += value.length + 1;
  });
  return out;
}

/** Undefined when the bytes are not a well-formed serialized map (they come from the guest). */
export function deserializePairs(bytes: Uint8Array): HeaderPairs | undefined {
  // The spec allows an empty map to be sent as zero bytes or as one 0x00 byte.
  if (bytes.length === 0 || (bytes.length === 1 && bytes[0] === 0)) return [];
  if (bytes.length < 4) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(0, true);
  if (count > (bytes.length - 4) / 10) return undefined;
  const pairs: HeaderPairs = [];
  let data = 4 + count * 8;
  for (let i = 0; i < count; i++) {
    const keyLength = view.getUint32(4 + i * 8, true);
    const valueLength = view.getUint32(8 + i * 8, true);
    const key = take(bytes, data, keyLength);
    data += keyLength + 1;
    const value = take(bytes, data, valueLength);
    data += valueLength + 1;
    if (key === undefined || value === undefined) return undefined;
    pairs.push([key, value]);
  }
  return pairs;
}

function take(bytes: Uint8Array, start: number, length: number): string | undefined {
  // The terminating NUL must be inside the buffer too.
  if (start + length + 1 > bytes.length) return undefined;
  return decoder.decode(bytes.subarray(start, start + length));
}
