/**
 * A minimal wasi_snapshot_preview1 that works on buffers: stdin is a byte
 * array, stdout and stderr go to callbacks, args and environment are what the
 * caller passes, clocks and randomness are real. There is no file system (no
 * preopened directory: fd_prestat_get answers BADF, so libc finds none) and
 * no sockets; every other call answers ENOSYS.
 *
 * Why not node:wasi: its stdin/stdout/stderr are OS file descriptors, so
 * every invocation would need temporary files or pipes and their cleanup,
 * and its surface is the whole of preview1 (path_open and friends stay
 * linked, guarded only by the absence of preopens). Handling the ~25 calls a
 * function really makes, on buffers, is smaller than that plumbing, has no
 * file-system code path at all, and lets output be capped while it is
 * written. node:wasi is also documented as not a sandbox.
 *
 * The same module serves filters (the WASI subset of the Proxy-Wasm spec):
 * no args, no environment, empty stdin, stdout/stderr turned into log lines.
 */
import { randomFillSync } from 'node:crypto';
import type { GuestMemory } from '../guest-memory.ts';
import { MemoryFault } from '../guest-memory.ts';
import { i32, u32 } from '../host-function.ts';
import type { HostFunction, WasmValue } from '../host-function.ts';
import { sig } from '../signatures.ts';
import type { FunctionType } from '../signatures.ts';

export const WASI_MODULE = 'wasi_snapshot_preview1';
/** The pre-snapshot name; the calls filters make have the same layout there. */
export const WASI_LEGACY_MODULE = 'wasi_unstable';

export const Errno = {
  SUCCESS: 0,
  BADF: 8,
  FAULT: 21,
  INVAL: 28,
  NOSYS: 52,
  SPIPE: 70,
} as const;

/** proc_exit unwinds the guest with this; the runner turns it into an exit code. */
export class WasiExit extends Error {
  constructor(readonly code: number) {
    super(`the module called proc_exit(${code})`);
    this.name = 'WasiExit';
  }
}

export interface WasiOptions {
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  stdin: Uint8Array;
  stdout(chunk: Uint8Array): void;
  stderr(chunk: Uint8Array): void;
  /** Longest single sleep poll_oneoff may do (the invocation deadline kills longer runs anyway). */
  maxSleepMs?: number;
}

const STDIN = 0;
const STDOUT = 1;
const STDERR = 2;
const FILETYPE_CHARACTER_DEVICE = 2;
const ALL_RIGHTS = (1n << 29n) - 1n;
const RANDOM_CHUNK = 65_536;
const encoder = new TextEncoder();

/** The calls implemented here, with the types a module must import them with. */
export const WASI_SIGNATURES: Readonly<Record<string, FunctionType>> = {
  args_sizes_get: sig(2),
  args_get: sig(2),
  environ_sizes_get: sig(2),
  environ_get: sig(2),
  clock_res_get: sig(2),
  clock_time_get: sig(['i32', 'i64', 'i32']),
  fd_write: sig(4),
  fd_read: sig(4),
  fd_fdstat_get: sig(2),
  fd_fdstat_set_flags: sig(2),
  fd_filestat_get: sig(2),
  fd_prestat_get: sig(2),
  fd_prestat_dir_name: sig(3),
  fd_close: sig(1),
  fd_sync: sig(1),
  fd_datasync: sig(1),
  fd_seek: sig(['i32', 'i64', 'i32', 'i32']),
  fd_tell: sig(2),
  poll_oneoff: sig(4),
  sched_yield: sig(0),
  random_get: sig(2),
  proc_exit: sig(1, []),
};

type WasiCall = (s: WasiState, args: WasmValue[]) => number;

const CALLS: Readonly<Record<string, WasiCall>> = {
  args_sizes_get: (s, a) => s.sizes(s.args, a),
  args_get: (s, a) => s.strings(s.args, a),
  environ_sizes_get: (s, a) => s.sizes(s.env, a),
  environ_get: (s, a) => s.strings(s.env, a),
  clock_res_get: (s, a) => s.clockRes(a),
  clock_time_get: (s, a) => s.clockTime(a),
  fd_write: (s, a) => s.fdWrite(a),
  fd_read: (s, a) => s.fdRead(a),
  fd_fdstat_get: (s, a) => s.fdstat(a),
  fd_fdstat_set_flags: (_s, a) => stdio(a[0]),
  fd_filestat_get: (s, a) => s.filestat(a),
  fd_prestat_get: () => Errno.BADF,
  fd_prestat_dir_name: () => Errno.BADF,
  fd_close: (_s, a) => stdio(a[0]),
  fd_sync: (_s, a) => stdio(a[0]),
  fd_datasync: (_s, a) => stdio(a[0]),
  fd_seek: (_s, a) => (isStdio(a[0]) ? Errno.SPIPE : Errno.BADF),
  fd_tell: (_s, a) => (isStdio(a[0]) ? Errno.SPIPE : Errno.BADF),
  poll_oneoff: (s, a) => s.pollOneoff(a),
  sched_yield: () => Errno.SUCCESS,
  random_get: (s, a) => s.random(a),
  proc_exit: (_s, [code]) => {
    throw new WasiExit(u32(code));
  },
};

/** The implementations of WASI_SIGNATURES for one instance: those named in `names` (the ones the module imports), sharing one state. */
export function createWasi(options: WasiOptions, memory: () => GuestMemory, names: Iterable<string>): Record<string, HostFunction> {
  const state = new WasiState(options, memory);
  const bound: Record<string, HostFunction> = {};
  for (const name of names) {
    const call = Object.hasOwn(CALLS, name) ? CALLS[name] : undefined;
    if (call) bound[name] = guarded(state, call);
  }
  return bound;
}

function guarded(state: WasiState, fn: WasiCall): HostFunction {
  return (...args) => {
    try {
      return fn(state, args);
    } catch (error) {
      if (error instanceof MemoryFault) return Errno.FAULT;
      throw error;
    }
  };
}

const isStdio = (fd: WasmValue | undefined): boolean => {
  const n = i32(fd);
  return n === STDIN || n === STDOUT || n === STDERR;
};
const stdio = (fd: WasmValue | undefined): number => (isStdio(fd) ? Errno.SUCCESS : Errno.BADF);

/** What poll_oneoff sleeps on: nothing ever notifies it, so one per thread serves every instance. */
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

class WasiState {
  readonly args: Uint8Array[];
  readonly env: Uint8Array[];
  private stdinOffset = 0;

  constructor(
    private readonly options: WasiOptions,
    private readonly memory: () => GuestMemory,
  ) {
    // NUL-terminated, as args_get/environ_get hand them out.
    this.args = options.args.map((arg) => encoder.encode(`${arg}\0`));
    this.env = Object.entries(options.env).map(([key, value]) => encoder.encode(`${key}=${value}\0`));
  }

  sizes(list: Uint8Array[], [countPtr, sizePtr]: WasmValue[]): number {
    const m = this.memory();
    m.writeU32(i32(countPtr), list.length);
    m.writeU32(i32(sizePtr), list.reduce((n, item) => n + item.length, 0));
    return Errno.SUCCESS;
  }

  strings(list: Uint8Array[], [pointersPtr, bufferPtr]: WasmValue[]): number {
    const m = this.memory();
    let pointer = u32(pointersPtr);
    let buffer = u32(bufferPtr);
    for (const item of list) {
      m.writeU32(pointer, buffer);
      m.write(buffer, item);
      pointer += 4;
      buffer += item.length;
    }
    return Errno.SUCCESS;
  }

  clockRes([id, resultPtr]: WasmValue[]): number {
    if (u32(id) > 3) return Errno.INVAL;
    this.memory().writeU64(i32(resultPtr), 1000n);
    return Errno.SUCCESS;
  }

  clockTime([id, , resultPtr]: WasmValue[]): number {
    const clock = u32(id);
    if (clock > 3) return Errno.INVAL;
    this.memory().writeU64(i32(resultPtr), clock === 0 ? realtimeNs() : process.hrtime.bigint());
    return Errno.SUCCESS;
  }

  fdWrite([fd, iovs, count, writtenPtr]: WasmValue[]): number {
    const n = i32(fd);
    if (n !== STDOUT && n !== STDERR) return Errno.BADF;
    const m = this.memory();
    let written = 0;
    for (const { pointer, length } of readIovecs(m, u32(iovs), u32(count))) {
      const chunk = m.read(pointer, length);
      if (n === STDOUT) this.options.stdout(chunk);
      else this.options.stderr(chunk);
      written += length;
    }
    m.writeU32(i32(writtenPtr), written);
    return Errno.SUCCESS;
  }

  fdRead([fd, iovs, count, readPtr]: WasmValue[]): number {
    if (i32(fd) !== STDIN) return Errno.BADF;
    const m = this.memory();
    let total = 0;
    for (const { pointer, length } of readIovecs(m, u32(iovs), u32(count))) {
      const chunk = this.options.stdin.subarray(this.stdinOffset, this.stdinOffset + length);
      m.write(pointer, chunk);
      this.stdinOffset += chunk.length;
      total += chunk.length;
      if (chunk.length < length) break;
    }
    m.writeU32(i32(readPtr), total);
    return Errno.SUCCESS;
  }

  fdstat([fd, resultPtr]: WasmValue[]): number {
    if (!isStdio(fd)) return Errno.BADF;
    const m = this.memory();
    const p = u32(resultPtr);
    m.write(p, new Uint8Array(24));
    m.write(p, Uint8Array.of(FILETYPE_CHARACTER_DEVICE));
    m.writeU64(p + 8, ALL_RIGHTS);
    m.writeU64(p + 16, ALL_RIGHTS);
    return Errno.SUCCESS;
  }

  filestat([fd, resultPtr]: WasmValue[]): number {
    if (!isStdio(fd)) return Errno.BADF;
    const m = this.memory();
    const p = u32(resultPtr);
    m.write(p, new Uint8Array(64));
    m.write(p + 16, Uint8Array.of(FILETYPE_CHARACTER_DEVICE));
    return Errno.SUCCESS;
  }

  random([bufferPtr, length]: WasmValue[]): number {
    const m = this.memory();
    const start = u32(bufferPtr);
    const total = u32(length);
    for (let done = 0; done < total; done += RANDOM_CHUNK) {
      const chunk = new Uint8Array(Math.min(RANDOM_CHUNK, total - done));
      randomFillSync(chunk);
      m.write(start + done, chunk);
    }
    return Errno.SUCCESS;
  }

  /**
   * Waits on clocks and stdio. Stdio is always ready (stdin is a buffer,
   * output goes to memory), so a clock is only waited for when nothing else
   * is subscribed — then the thread really sleeps (Atomics.wait), which the
   * invocation deadline bounds.
   */
  pollOneoff([inPtr, outPtr, count, eventsPtr]: WasmValue[]): number {
    const n = u32(count);
    if (n === 0) return Errno.INVAL;
    const m = this.memory();
    const subscriptions = Array.from({ length: n }, (_, i) => readSubscription(m, u32(inPtr) + i * 48));
    const ready = subscriptions.filter((s) => s.tag !== CLOCK);
    const events = ready.length > 0 ? ready.map((s) => this.fdEvent(s)) : this.sleepForClocks(subscriptions);
    events.forEach((event, i) => writeEvent(m, u32(outPtr) + i * 32, event));
    m.writeU32(i32(eventsPtr), events.length);
    return Errno.SUCCESS;
  }

  private fdEvent(s: Subscription): PollEvent {
    const readable = s.tag === FD_READ && s.fd === STDIN;
    const writable = s.tag === FD_WRITE && (s.fd === STDOUT || s.fd === STDERR);
    if (!readable && !writable) return { userdata: s.userdata, error: Errno.BADF, type: s.tag, nbytes: 0n };
    const nbytes = readable ? BigInt(this.options.stdin.length - this.stdinOffset) : 65_536n;
    return { userdata: s.userdata, error: Errno.SUCCESS, type: s.tag, nbytes };
  }

  private sleepForClocks(subscriptions: Subscription[]): PollEvent[] {
    const nowNs = (clock: number): bigint => (clock === 0 ? realtimeNs() : process.hrtime.bigint());
    const waits = subscriptions.map((s) => (s.absolute ? s.timeout - nowNs(s.clockId) : s.timeout));
    const shortest = waits.reduce((a, b) => (b < a ? b : a));
    const sleepMs = Math.min(Number(shortest > 0n ? shortest / 1_000_000n : 0n), this.options.maxSleepMs ?? 10_000);
    if (sleepMs > 0) Atomics.wait(SLEEPER, 0, 0, sleepMs);
    return subscriptions.filter((_, i) => (waits[i] ?? 0n) <= shortest).map((s) => ({ userdata: s.userdata, error: Errno.SUCCESS, type: CLOCK, nbytes: 0n }));
  }
}

function realtimeNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

function* readIovecs(m: GuestMemory, start: number, count: number): Generator<{ pointer: number; length: number }> {
  for (let i = 0; i < count; i++) {
    yield { pointer: m.readU32(start + i * 8), length: m.readU32(start + i * 8 + 4) };
  }
}

const CLOCK = 0;
const FD_READ = 1;
const FD_WRITE = 2;

interface Subscription {
  userdata: bigint;
  tag: number;
  clockId: number;
  timeout: bigint;
  absolute: boolean;
  fd: number;
}

interface PollEvent {
  userdata: bigint;
  error: number;
  type: number;
  nbytes: bigint;
}

function readSubscription(m: GuestMemory, p: number): Subscription {
  const raw = m.read(p, 48);
  const view = new DataView(raw.buffer);
  const tag = view.getUint8(8);
  return {
    userdata: view.getBigUint64(0, true),
    tag,
    clockId: view.getUint32(16, true),
    timeout: tag === CLOCK ? view.getBigUint64(24, true) : 0n,
    absolute: tag === CLOCK && (view.getUint16(40, true) & 1) === 1,
    fd: view.getUint32(16, true),
  };
}

function writeEvent(m: GuestMemory, p: number, event: PollEvent): void {
  const raw = new Uint8Array(32);
  const view = new DataView(raw.buffer);
  view.setBigUint64(0, event.userdata, true);
  view.setUint16(8, event.error, true);
  view.setUint8(10, event.type);
  view.setBigUint64(16, event.nbytes, true);
  m.write(p, raw);
}

