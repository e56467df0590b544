/**
 * Tar fixtures, generated in code: well-formed archives through tar-stream,
 * and hostile or huge ones assembled by hand where tar-stream would refuse or
 * be too slow.
 */
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { pack as tarPack, type Header } from 'tar-stream';

export type TarEntrySpec = Partial<Header> & { name: string; content?: string | Buffer; pax?: Record<string, string> };

const FIXED_MTIME = new Date('2020-01-01T00:00:00Z');

/** A .tar.gz built by tar-stream; entries keep whatever hostile names/types they are given. */
export async function tarGz(entries: TarEntrySpec[]): Promise<Buffer> {
  return gzipSync(await tarBytes(entries));
}

export async function tarBytes(entries: TarEntrySpec[]): Promise<Buffer> {
  const pack = tarPack();
  const collected = collect(Readable.from(pack));
  for (const { content, ...header } of entries) {
    const full = { mtime: FIXED_MTIME, ...header } as Header;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error | null): void => (error ? reject(error) : resolve());
      if (content === undefined) pack.entry(full, done);
      else pack.entry(full, typeof content === 'string' ? Buffer.from(content) : content, done);
    });
  }
  pack.finalize();
  return collected;
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/**
 * A 512-byte ustar header written by hand (fast enough for 100,000 entries,
 * and able to say things tar-stream will not write).
 */
export function ustarHeader(fields: { name: string | Buffer; size?: number; typeflag?: string; mode?: number; linkname?: string }): Buffer {
  const header = Buffer.alloc(512);
  const name = typeof fields.name === 'string' ? Buffer.from(fields.name) : fields.name;
  name.copy(header, 0, 0, 100);
  header.write(octal(fields.mode ?? 0o644, 7), 100, 'latin1');
  header.write(octal(0, 7), 108, 'latin1');
  header.write(octal(0, 7), 116, 'latin1');
  header.write(octal(fields.size ?? 0, 11), 124, 'latin1');
  header.write(octal(Math.floor(FIXED_MTIME.getTime() / 1000), 11), 136, 'latin1');
  header.write(fields.typeflag ?? '0', 156, 'latin1');
  if (fields.linkname) header.write(fields.linkname, 157, 'latin1');
  header.write('ustar\u000000', 257, 'latin1');
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${octal(sum, 6)}\u0000 `, 148, 'latin1');
  return header;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width, '0');
}

export const END_OF_TAR = Buffer.alloc(1024);

/** `count` empty regular files named f0, f1, ... as a .tar.gz. */
export function manyEntriesTarGz(count: number): Buffer {
  const blocks: Buffer[] = [];
  for (let index = 0; index < count; index += 1) blocks.push(ustarHeader({ name: `f${index}` }));
  blocks.push(END_OF_TAR);
  return gzipSync(Buffer.concat(blocks), { level: 1 });
}

const ZERO_CHUNK_BYTES = 16 * 1024 * 1024;
let zeroMember: Buffer | undefined;

/** One gzip member holding 16 MiB of zeros (~16 KB), computed once. */
function gzipZeroMember(): Buffer {
  zeroMember ??= gzipSync(Buffer.alloc(ZERO_CHUNK_BYTES), { level: 9 });
  return zeroMember;
}

/**
 * `bytes` of zeros as concatenated gzip members: a valid gzip stream (gunzip
 * reads all members) with a ratio of ~1000:1, built in milliseconds instead
 * of the seconds it takes to stream the zeros through a compressor.
 */
export function gzipZeros(bytes: number): Buffer[] {
  if (bytes % ZERO_CHUNK_BYTES !== 0) throw new Error('gzipZeros wants a multiple of 16 MiB');
  return Array.from({ length: bytes / ZERO_CHUNK_BYTES }, () => gzipZeroMember());
}

/** A tar.gz whose files are all zeros: `files` entries of `fileBytes` each. */
export function zeroFilesTarGz(names: string[], fileBytes: number): Buffer {
  if (fileBytes % 512 !== 0) throw new Error('zeroFilesTarGz wants whole tar blocks');
  const zeroContent = fileBytes >= ZERO_CHUNK_BYTES ? gzipZeros(fileBytes) : [gzipSync(Buffer.alloc(fileBytes), { level: 9 })];
  const members: Buffer[] = [];
  for (const name of names) {
    members.push(gzipSync(ustarHeader({ name, size: fileBytes })));
    members.push(...zeroContent);
  }
  members.push(gzipSync(END_OF_TAR));
  return Buffer.concat(members);
}
