/**
 * Zip fixtures, generated in code. Well-formed zips come from yazl; hostile
 * ones (lying sizes, shared local headers, links, devices, bad names) from
 * this small writer, which writes whatever it is told to.
 */
import { constants, crc32, deflateRawSync } from 'node:zlib';
import { ZipFile } from 'yazl';

export interface ZipEntrySpec {
  name: string | Buffer;
  /** Uncompressed content, compressed here with `method`. */
  content?: Buffer;
  /** Already compressed data, for bombs too big to compress in a test. */
  precompressed?: { data: Buffer; uncompressedSize: number; crc: number };
  /** 0 stored, 8 deflate (default); anything else is written as is. */
  method?: number;
  flags?: number;
  /** Sets "made by Unix" and the mode in the external attributes. */
  unixMode?: number;
  /** Lies: sizes written instead of the true ones. */
  centralUncompressedSize?: number;
  localUncompressedSize?: number;
  localName?: string | Buffer;
  centralExtra?: Buffer;
  /** Writes no local file: the central record points at entry N's. */
  sharesLocalHeaderOf?: number;
}

const UNIX_MADE_BY = (3 << 8) | 20;
const DOS_DATE_1980 = (0 << 9) | (1 << 5) | 1;

interface Written {
  offset: number;
  compressedSize: number;
  uncompressedSize: number;
  crc: number;
}

export function buildZip(entries: ZipEntrySpec[], options: { zip64?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  let offset = 0;
  const written: Written[] = [];
  for (const spec of entries) {
    const shared = spec.sharesLocalHeaderOf === undefined ? undefined : written[spec.sharesLocalHeaderOf];
    if (shared) {
      written.push(shared);
      continue;
    }
    const { data, uncompressedSize, crc } = payload(spec);
    const local = localHeader(spec, data.length, spec.localUncompressedSize ?? uncompressedSize, crc);
    written.push({ offset, compressedSize: data.length, uncompressedSize, crc });
    parts.push(local, data);
    offset += local.length + data.length;
  }
  const centralStart = offset;
  entries.forEach((spec, index) => {
    const record = centralRecord(spec, written[index] as Written);
    parts.push(record);
    offset += record.length;
  });
  parts.push(...endRecords(entries.length, centralStart, offset - centralStart, options.zip64 === true || entries.length > 0xffff));
  return Buffer.concat(parts);
}

function payload(spec: ZipEntrySpec): { data: Buffer; uncompressedSize: number; crc: number } {
  if (spec.precompressed) return spec.precompressed;
  const content = spec.content ?? Buffer.alloc(0);
  const data = (spec.method ?? 8) === 8 ? deflateRawSync(content) : content;
  return { data, uncompressedSize: content.length, crc: crc32(content) };
}

function nameBytes(name: string | Buffer): Buffer {
  return typeof name === 'string' ? Buffer.from(name) : name;
}

function localHeader(spec: ZipEntrySpec, compressedSize: number, uncompressedSize: number, crc: number): Buffer {
  const name = nameBytes(spec.localName ?? spec.name);
  const header = Buffer.alloc(30);
  header.writeUInt32LE(0x04034b50, 0);
  header.writeUInt16LE(20, 4);
  header.writeUInt16LE(spec.flags ?? 0, 6);
  header.writeUInt16LE(spec.method ?? 8, 8);
  header.writeUInt16LE(0, 10);
  header.writeUInt16LE(DOS_DATE_1980, 12);
  header.writeUInt32LE(crc, 14);
  header.writeUInt32LE(compressedSize, 18);
  header.writeUInt32LE(uncompressedSize, 22);
  header.writeUInt16LE(name.length, 26);
  header.writeUInt16LE(0, 28);
  return Buffer.concat([header, name]);
}

function centralRecord(spec: ZipEntrySpec, at: Written): Buffer {
  const name = nameBytes(spec.name);
  const extra = spec.centralExtra ?? Buffer.alloc(0);
  const record = Buffer.alloc(46);
  record.writeUInt32LE(0x02014b50, 0);
  record.writeUInt16LE(spec.unixMode === undefined ? 20 : UNIX_MADE_BY, 4);
  record.writeUInt16LE(20, 6);
  record.writeUInt16LE(spec.flags ?? 0, 8);
  record.writeUInt16LE(spec.method ?? 8, 10);
  record.writeUInt16LE(0, 12);
  record.writeUInt16LE(DOS_DATE_1980, 14);
  record.writeUInt32LE(at.crc, 16);
  record.writeUInt32LE(at.compressedSize, 20);
  record.writeUInt32LE(spec.centralUncompressedSize ?? at.uncompressedSize, 24);
  record.writeUInt16LE(name.length, 28);
  record.writeUInt16LE(extra.length, 30);
  record.writeUInt16LE(0, 32);
  record.writeUInt16LE(0, 34);
  record.writeUInt16LE(0, 36);
  record.writeUInt32LE(((spec.unixMode ?? 0) << 16) >>> 0, 38);
  record.writeUInt32LE(at.offset, 42);
  return Buffer.concat([record, name, extra]);
}

function endRecords(count: number, centralStart: number, centralSize: number, zip64: boolean): Buffer[] {
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(zip64 ? 0xffff : count, 8);
  end.writeUInt16LE(zip64 ? 0xffff : count, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(zip64 ? 0xffffffff : centralStart, 16);
  if (!zip64) return [end];
  const record = Buffer.alloc(56);
  record.writeUInt32LE(0x06064b50, 0);
  record.writeBigUInt64LE(44n, 4);
  record.writeUInt16LE(45, 12);
  record.writeUInt16LE(45, 14);
  record.writeBigUInt64LE(BigInt(count), 24);
  record.writeBigUInt64LE(BigInt(count), 32);
  record.writeBigUInt64LE(BigInt(centralSize), 40);
  record.writeBigUInt64LE(BigInt(centralStart), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(0x07064b50, 0);
  locator.writeBigUInt64LE(BigInt(centralStart + centralSize), 8);
  locator.writeUInt32LE(1, 16);
  return [record, locator, end];
}

const ZERO_CHUNK_BYTES = 16 * 1024 * 1024;
/** An empty final deflate block (fixed Huffman, BFINAL=1). */
const FINAL_EMPTY_BLOCK = Buffer.from([0x03, 0x00]);

/**
 * A raw deflate stream of `bytes` zeros: one 16 MiB chunk compressed with a
 * full flush (which resets the compressor, so the chunk is self-contained)
 * repeated, then an empty final block. 1 GiB costs ~1 MB and milliseconds.
 * The CRC is left at 0: tests using this are rejected long before the end.
 */
export function deflatedZeros(bytes: number): { data: Buffer; uncompressedSize: number; crc: number } {
  if (bytes % ZERO_CHUNK_BYTES !== 0) throw new Error('deflatedZeros wants a multiple of 16 MiB');
  const chunk = deflateRawSync(Buffer.alloc(ZERO_CHUNK_BYTES), { level: 9, finishFlush: constants.Z_FULL_FLUSH });
  const chunks = Array.from({ length: bytes / ZERO_CHUNK_BYTES }, () => chunk);
  return { data: Buffer.concat([...chunks, FINAL_EMPTY_BLOCK]), uncompressedSize: bytes, crc: 0 };
}

export interface YazlEntry {
  name: string;
  content?: Buffer;
  mode?: number;
  directory?: boolean;
}

/** A well-formed zip written by yazl. */
export async function yazlZip(entries: YazlEntry[]): Promise<Buffer> {
  const zip = new ZipFile();
  for (const entry of entries) {
    const options = { mtime: new Date('2020-01-01T00:00:00Z'), ...(entry.mode === undefined ? {} : { mode: entry.mode }) };
    if (entry.directory) zip.addEmptyDirectory(entry.name, options);
    else zip.addBuffer(entry.content ?? Buffer.alloc(0), entry.name, options);
  }
  zip.end();
  const chunks: Buffer[] = [];
  for await (const chunk of zip.outputStream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/**
 * Rewrites the uncompressed size of the entry named `name`, in its central
 * record and, unless sizes are deferred to a data descriptor, its local header.
 */
export function patchUncompressedSize(zip: Buffer, name: string, size: number): Buffer {
  const patched = Buffer.from(zip);
  const wanted = Buffer.from(name);
  let patchedCentral = false;
  for (let at = 0; at + 46 <= patched.length; at += 1) {
    const signature = patched.readUInt32LE(at);
    if (signature === 0x02014b50 && nameAt(patched, at + 46, patched.readUInt16LE(at + 28)).equals(wanted)) {
      patched.writeUInt32LE(size, at + 24);
      patchedCentral = true;
    } else if (signature === 0x04034b50 && nameAt(patched, at + 30, patched.readUInt16LE(at + 26)).equals(wanted)) {
      if ((patched.readUInt16LE(at + 6) & 0x8) === 0) patched.writeUInt32LE(size, at + 22);
    }
  }
  if (!patchedCentral) throw new Error(`no central record for ${name}`);
  return patched;
}

function nameAt(buffer: Buffer, start: number, length: number): Buffer {
  return buffer.subarray(start, Math.min(start + length, buffer.length));
}
