/**
 * Archive format detection by magic bytes. The file name and the client's
 * Content-Type are not trusted: only what the bytes are decides which parser
 * reads them.
 */
import { open } from 'node:fs/promises';
import type { RandomAccess } from './content.ts';
import { ArchiveRejectedError } from './limits.ts';

export type ArchiveFormat = 'tar.gz' | 'zip';

const GZIP = Buffer.from([0x1f, 0x8b, 0x08]);
const ZIP_LOCAL_FILE = Buffer.from('PK\x03\x04', 'latin1');
/** An empty zip is only its end-of-central-directory record. */
const ZIP_EMPTY = Buffer.from('PK\x05\x06', 'latin1');

/** Formats we recognise only to say precisely what to upload instead. */
const KNOWN_OTHERS: ReadonlyArray<{ magic: Buffer; offset: number; name: string }> = [
  { magic: Buffer.from('ustar', 'latin1'), offset: 257, name: 'an uncompressed tar' },
  { magic: Buffer.from('BZh', 'latin1'), offset: 0, name: 'bzip2 data' },
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), offset: 0, name: 'xz data' },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), offset: 0, name: 'zstd data' },
  { magic: Buffer.from([0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c]), offset: 0, name: 'a 7-Zip archive' },
  { magic: Buffer.from('Rar!', 'latin1'), offset: 0, name: 'a RAR archive' },
];

const HEADER_BYTES = 512;

export async function detectFormat(path: string): Promise<ArchiveFormat> {
  const handle = await open(path, 'r');
  try {
    return await detectFormatOf(handle);
  } finally {
    await handle.close();
  }
}

/** Reads the first bytes through an already open handle (the one that will be parsed). */
export async function detectFormatOf(handle: RandomAccess): Promise<ArchiveFormat> {
  const head = Buffer.alloc(HEADER_BYTES);
  const { bytesRead } = await handle.read(head, 0, HEADER_BYTES, 0);
  return formatOfHead(head.subarray(0, bytesRead));
}

export function formatOfHead(head: Buffer): ArchiveFormat {
  if (startsWith(head, GZIP, 0)) return 'tar.gz';
  if (startsWith(head, ZIP_LOCAL_FILE, 0) || startsWith(head, ZIP_EMPTY, 0)) return 'zip';
  throw new ArchiveRejectedError('unsupported_format', `${describe(head)}; upload a .tar.gz or a .zip`);
}

function describe(head: Buffer): string {
  if (head.length === 0) return 'the file is empty';
  const known = KNOWN_OTHERS.find((other) => startsWith(head, other.magic, other.offset));
  return known ? `the file is ${known.name}, not a supported archive` : 'the file is not a gzip-compressed tar nor a zip archive';
}

function startsWith(head: Buffer, magic: Buffer, offset: number): boolean {
  return head.length >= offset + magic.length && head.subarray(offset, offset + magic.length).equals(magic);
}
