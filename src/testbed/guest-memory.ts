/**
 * Bounds-checked access to a guest's linear memory for host functions.
 *
 * Every pointer and length comes from untrusted code, so each access is
 * checked and a bad one raises MemoryFault, which host functions turn into
 * the ABI's "invalid memory access" status (never a host crash). Views are
 * re-created whenever the memory has grown, since growing detaches the old
 * ArrayBuffer.
 */
export class MemoryFault extends Error {
  constructor(pointer: number, length: number) {
    super(`invalid memory access: ${length} bytes at ${pointer}`);
    this.name = 'MemoryFault';
  }
}

export class GuestMemory {
  private buffer: ArrayBuffer | undefined;
  private bytes = new Uint8Array(0);
  private view = new DataView(new ArrayBuffer(0));

  constructor(private readonly memory: WebAssembly.Memory) {}

  get size(): number {
    return this.memory.buffer.byteLength;
  }

  private refresh(): void {
    const current = this.memory.buffer;
    if (current === this.buffer) return;
    this.buffer = current;
    this.bytes = new Uint8Array(current);
    this.view = new DataView(current);
  }

  private check(pointer: number, length: number): void {
    this.refresh();
    // Pointers arrive as i32 (signed in JS); the ABI means unsigned.
    if (pointer < 0 || length < 0 || pointer + length > this.bytes.length) throw new MemoryFault(pointer >>> 0, length >>> 0);
  }

  /** A copy: the guest may change or move its memory after we return. */
  read(pointer: number, length: number): Uint8Array {
    const p = pointer >>> 0;
    const n = length >>> 0;
    this.check(p, n);
    return this.bytes.slice(p, p + n);
  }

  readString(pointer: number, length: number): string {
    return decoder.decode(this.read(pointer, length));
  }

  write(pointer: number, data: Uint8Array): void {
    const p = pointer >>> 0;
    this.check(p, data.length);
    this.bytes.set(data, p);
  }

  writeU32(pointer: number, value: number): void {
    const p = pointer >>> 0;
    this.check(p, 4);
    this.view.setUint32(p, value >>> 0, true);
  }

  writeU64(pointer: number, value: bigint): void {
    const p = pointer >>> 0;
    this.check(p, 8);
    this.view.setBigUint64(p, BigInt.asUintN(64, value), true);
  }

  readU32(pointer: number): number {
    const p = pointer >>> 0;
    this.check(p, 4);
    return this.view.getUint32(p, true);
  }
}

const decoder = new TextDecoder('utf-8');
