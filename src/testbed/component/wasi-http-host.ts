/**
 * Kiln's own host for the `wasi:http/proxy` world (WASI 0.2), shaped as the
 * import object jco's `--instantiation sync` glue expects. It is written
 * here rather than taken from @bytecodealliance/preview2-shim on purpose:
 * that shim is a whole-process implementation (real sockets and file
 * system through a helper thread, host environment variables, process.exit
 * on errors). This one can reach nothing but what one exchange gives it:
 *
 *  - the incoming request (in memory) and a response sink (bounded);
 *  - stdout/stderr as log lines (bounded); stdin is empty;
 *  - no file system (no preopens; every descriptor call fails), no
 *    terminal, no environment, no sockets (not importable in this world);
 *  - clocks and random;
 *  - outgoing HTTP only through the `outgoing` callback the caller passes,
 *    which enforces the test bed's allow-list (refusal = HTTP-request-denied)
 *    and performs allowed calls through the runner (bridge.ts): the call
 *    blocks this thread until the response head is back, and its body is
 *    pulled in bounded chunks as the guest reads it.
 *
 * Everything is synchronous: the glue is instantiated in sync mode, and the
 * guest's event loop blocks on pollables inside `handle`. Timers sleep the
 * worker thread with Atomics.wait; the runner's deadline still applies
 * (it terminates the thread).
 */
import { randomBytes, randomFillSync } from 'node:crypto';

export interface OutgoingCall {
  method: string;
  scheme: string;
  authority: string;
  pathWithQuery: string;
  headers: Array<[string, string]>;
  body: Uint8Array;
}

/**
 * Where the bytes of an incoming body come from, pulled as the guest reads:
 * `undefined` is the end. An outgoing call's response arrives through one
 * (bridge.ts) in bounded chunks; the incoming request is one in memory.
 */
export interface ByteSource {
  next(maxBytes: number): Uint8Array | undefined;
}

/** A wasi:http error-code value (`tag`, and `val` for the variants that carry one). */
export interface WasiErrorCode {
  tag: string;
  val?: unknown;
}

export type OutgoingAnswer =
  | { ok: true; status: number; headers: Array<[string, string]>; body: ByteSource }
  | { ok: false; error: WasiErrorCode; /** why, for the result */ reason?: string; /** the TestbedConfig limit that ended it */ limit?: string };

/** A source over bytes already in memory. */
export function bytesSource(bytes: Uint8Array): ByteSource {
  let offset = 0;
  return {
    next(maxBytes) {
      if (offset >= bytes.length) return undefined;
      const chunk = bytes.subarray(offset, Math.min(bytes.length, offset + maxBytes));
      offset += chunk.length;
      return chunk;
    },
  };
}

export interface HostLimits {
  /** Response body bytes kept; writing past it fails the stream. */
  maxBodyBytes: number;
  /** Log bytes kept (stdout + stderr); the rest is dropped and counted. */
  maxLogBytes: number;
}

export interface ExchangeRecord {
  logs: Array<{ stream: 'stdout' | 'stderr'; line: string }>;
  droppedLogBytes: number;
  /** The first MAX_OUTGOING_RECORDS outgoing calls of the request. */
  outgoing: OutgoingRecord[];
  /** Outgoing calls made past MAX_OUTGOING_RECORDS: counted, not listed. */
  droppedOutgoing: number;
}

/**
 * Outgoing calls listed per request. A refused call (not allowed, or past
 * maxHttpCalls) costs the guest microseconds, so a loop of them until the
 * deadline would otherwise list hundreds of thousands, all carried to the
 * API and rendered in its result.
 */
export const MAX_OUTGOING_RECORDS = 64;
/** Characters of a call's authority and path kept in its record (the guest chooses their length). */
const RECORDED_TEXT_CHARS = 2048;

export interface OutgoingRecord {
  authority: string;
  pathWithQuery: string;
  allowed: boolean;
  status?: number;
  /** Why an allowed call failed (the guest saw an error-code). */
  error?: string;
  /** The TestbedConfig limit that refused or ended the call. */
  limit?: string;
}

type WasiMethod = { tag: string; val?: string };
type Scheme = { tag: 'HTTP' | 'HTTPS' } | { tag: 'other'; val: string };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const FORBIDDEN_HEADERS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'http2-settings']);

class WasiError {
  constructor(private readonly message: string) {}
  toDebugString(): string {
    return this.message;
  }
}

/** A condition that nothing but the guest itself can make true, and that the host may end by force. */
interface Gate {
  ready(): boolean;
  force(): void;
}

/** Ready at once, at a time (a timer), or when its gate opens (an outgoing response waiting for its request body). */
class Pollable {
  constructor(
    private readonly readyAtNs: bigint | undefined = undefined,
    private readonly gate: Gate | undefined = undefined,
  ) {}
  get gated(): boolean {
    return this.gate !== undefined;
  }
  ready(): boolean {
    if (this.gate) return this.gate.ready();
    return this.readyAtNs === undefined || process.hrtime.bigint() >= this.readyAtNs;
  }
  block(): void {
    // The guest is blocked: it cannot write more of the request body, so the call goes with what it has.
    if (this.gate) return this.gate.ready() ? undefined : this.gate.force();
    if (this.readyAtNs === undefined) return;
    const waitNs = this.readyAtNs - process.hrtime.bigint();
    if (waitNs > 0n) sleepMs(Number(waitNs / 1_000_000n) + 1);
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

function poll(pollables: Pollable[]): Uint32Array {
  if (pollables.length === 0) throw new Error('poll: empty list');
  for (;;) {
    const ready = pollables.flatMap((p, i) => (p.ready() ? [i] : []));
    if (ready.length > 0) return Uint32Array.from(ready);
    // A gated pollable is opened by force rather than waited for; otherwise all are timers.
    (pollables.find((p) => p.gated) ?? (pollables[0] as Pollable)).block();
  }
}

/** Largest chunk one read hands the guest (it asks for up to 4 GiB at once). */
const MAX_READ_BYTES = 64 * 1024;

class InputStream {
  private readonly source: ByteSource;
  constructor(source: ByteSource | Uint8Array) {
    this.source = source instanceof Uint8Array ? bytesSource(source) : source;
  }
  read(len: bigint): Uint8Array {
    if (len === 0n) return new Uint8Array(0);
    const chunk = this.source.next(Number(len < BigInt(MAX_READ_BYTES) ? len : BigInt(MAX_READ_BYTES)));
    if (chunk === undefined) throw { tag: 'closed' };
    return chunk.slice();
  }
  blockingRead(len: bigint): Uint8Array {
    return this.read(len);
  }
  skip(len: bigint): bigint {
    return BigInt(this.read(len).length);
  }
  blockingSkip(len: bigint): bigint {
    return this.skip(len);
  }
  subscribe(): Pollable {
    return new Pollable();
  }
}

/** Writes to a sink; `onWrite` may refuse (returns false) when a bound is passed. */
class OutputStream {
  private closed = false;
  constructor(private readonly onWrite: (bytes: Uint8Array) => boolean) {}
  checkWrite(): bigint {
    if (this.closed) throw { tag: 'closed' };
    return 1_048_576n;
  }
  write(contents: Uint8Array): void {
    if (this.closed) throw { tag: 'closed' };
    if (!this.onWrite(contents)) {
      this.closed = true;
      throw { tag: 'last-operation-failed', val: new WasiError('the test bed body limit was reached') };
    }
  }
  blockingWriteAndFlush(contents: Uint8Array): void {
    this.write(contents);
  }
  flush(): void {
    if (this.closed) throw { tag: 'closed' };
  }
  blockingFlush(): void {
    this.flush();
  }
  subscribe(): Pollable {
    return new Pollable();
  }
  writeZeroes(len: bigint): void {
    this.write(new Uint8Array(Number(len)));
  }
  blockingWriteZeroesAndFlush(len: bigint): void {
    this.writeZeroes(len);
  }
  splice(source: InputStream, len: bigint): bigint {
    const chunk = source.read(len);
    this.write(chunk);
    return BigInt(chunk.length);
  }
  blockingSplice(source: InputStream, len: bigint): bigint {
    return this.splice(source, len);
  }
}

class Fields {
  private entriesList: Array<[string, Uint8Array]> = [];
  private immutable = false;

  static fromList(entries: Array<[string, Uint8Array]>): Fields {
    const fields = new Fields();
    for (const [name, value] of entries) fields.append(name, value);
    return fields;
  }
  static locked(entries: Array<[string, string]>): Fields {
    const fields = Fields.fromList(entries.filter(([name]) => !FORBIDDEN_HEADERS.has(name.toLowerCase())).map(([name, value]) => [name.toLowerCase(), encoder.encode(value)]));
    fields.immutable = true;
    return fields;
  }
  lock(): this {
    this.immutable = true;
    return this;
  }
  get(name: string): Uint8Array[] {
    const key = name.toLowerCase();
    return this.entriesList.filter(([n]) => n === key).map(([, v]) => v);
  }
  has(name: string): boolean {
    return this.get(name).length > 0;
  }
  set(name: string, values: Uint8Array[]): void {
    this.mutable(name);
    this.delete(name);
    for (const value of values) this.append(name, value);
  }
  delete(name: string): void {
    this.mutable(name);
    const key = name.toLowerCase();
    this.entriesList = this.entriesList.filter(([n]) => n !== key);
  }
  append(name: string, value: Uint8Array): void {
    this.mutable(name);
    this.entriesList.push([name.toLowerCase(), value]);
  }
  entries(): Array<[string, Uint8Array]> {
    return this.entriesList.map(([n, v]) => [n, v]);
  }
  clone(): Fields {
    return Fields.fromList(this.entries());
  }
  textPairs(): Array<[string, string]> {
    return this.entriesList.map(([n, v]) => [n, decoder.decode(v)]);
  }
  private mutable(name: string): void {
    if (this.immutable) throw { tag: 'immutable' };
    if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) throw { tag: 'invalid-syntax' };
    if (FORBIDDEN_HEADERS.has(name.toLowerCase())) throw { tag: 'forbidden' };
  }
}

class FutureTrailers {
  private taken = false;
  subscribe(): Pollable {
    return new Pollable();
  }
  get(): unknown {
    if (this.taken) return { tag: 'err', val: undefined };
    this.taken = true;
    return { tag: 'ok', val: { tag: 'ok', val: undefined } };
  }
}

class IncomingBody {
  private streamTaken = false;
  constructor(private readonly bytes: ByteSource | Uint8Array) {}
  stream(): InputStream {
    if (this.streamTaken) throw undefined;
    this.streamTaken = true;
    return new InputStream(this.bytes);
  }
  static finish(_body: IncomingBody): FutureTrailers {
    return new FutureTrailers();
  }
}

class IncomingRequest {
  private consumed = false;
  constructor(
    private readonly methodValue: WasiMethod,
    private readonly path: string,
    private readonly schemeValue: Scheme,
    private readonly authorityValue: string,
    private readonly headerFields: Fields,
    private readonly body: Uint8Array,
  ) {}
  method(): WasiMethod {
    return this.methodValue;
  }
  pathWithQuery(): string {
    return this.path;
  }
  scheme(): Scheme {
    return this.schemeValue;
  }
  authority(): string {
    return this.authorityValue;
  }
  headers(): Fields {
    return this.headerFields;
  }
  consume(): IncomingBody {
    if (this.consumed) throw undefined;
    this.consumed = true;
    return new IncomingBody(this.body);
  }
}

/** A body being written by the guest: the response's, or an outgoing request's. */
class OutgoingBody {
  readonly chunks: Uint8Array[] = [];
  size = 0;
  finished = false;
  private streamTaken = false;
  constructor(private readonly maxBytes: number) {}
  write(): OutputStream {
    if (this.streamTaken) throw undefined;
    this.streamTaken = true;
    return new OutputStream((bytes) => {
      if (this.size + bytes.length > this.maxBytes) return false;
      this.chunks.push(bytes.slice());
      this.size += bytes.length;
      return true;
    });
  }
  static finish(body: OutgoingBody, _trailers: Fields | undefined): void {
    body.finished = true;
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.chunks, this.size);
  }
}

class OutgoingResponse {
  status = 200;
  responseBody: OutgoingBody | undefined;
  constructor(
    private readonly headerFields: Fields,
    private readonly maxBodyBytes: number,
  ) {
    headerFields.lock();
  }
  statusCode(): number {
    return this.status;
  }
  setStatusCode(status: number): void {
    if (status < 100 || status > 999) throw undefined;
    this.status = status;
  }
  headers(): Fields {
    return this.headerFields;
  }
  body(): OutgoingBody {
    if (this.responseBody) throw undefined;
    this.responseBody = new OutgoingBody(this.maxBodyBytes);
    return this.responseBody;
  }
  headersAsText(): Array<[string, string]> {
    return this.headerFields.textPairs();
  }
}

type ResponseResult = { tag: 'ok'; val: OutgoingResponse } | { tag: 'err'; val: { tag: string; val?: unknown } };

class ResponseOutparam {
  constructor(readonly onSet: (result: ResponseResult) => void) {}
  static set(param: ResponseOutparam, response: ResponseResult): void {
    param.onSet(response);
  }
}

class RequestOptions {
  private timeouts: Record<string, bigint | undefined> = {};
  connectTimeout(): bigint | undefined {
    return this.timeouts.connect;
  }
  setConnectTimeout(value: bigint | undefined): void {
    this.timeouts.connect = value;
  }
  firstByteTimeout(): bigint | undefined {
    return this.timeouts.firstByte;
  }
  setFirstByteTimeout(value: bigint | undefined): void {
    this.timeouts.firstByte = value;
  }
  betweenBytesTimeout(): bigint | undefined {
    return this.timeouts.betweenBytes;
  }
  setBetweenBytesTimeout(value: bigint | undefined): void {
    this.timeouts.betweenBytes = value;
  }
}

class OutgoingRequest {
  methodValue: WasiMethod = { tag: 'get' };
  path: string | undefined;
  schemeValue: Scheme | undefined;
  authorityValue: string | undefined;
  requestBody: OutgoingBody | undefined;
  constructor(
    private readonly headerFields: Fields,
    private readonly maxBodyBytes: number,
  ) {
    headerFields.lock();
  }
  body(): OutgoingBody {
    if (this.requestBody) throw undefined;
    this.requestBody = new OutgoingBody(this.maxBodyBytes);
    return this.requestBody;
  }
  method(): WasiMethod {
    return this.methodValue;
  }
  setMethod(method: WasiMethod): void {
    this.methodValue = method;
  }
  pathWithQuery(): string | undefined {
    return this.path;
  }
  setPathWithQuery(path: string | undefined): void {
    this.path = path;
  }
  scheme(): Scheme | undefined {
    return this.schemeValue;
  }
  setScheme(scheme: Scheme | undefined): void {
    this.schemeValue = scheme;
  }
  authority(): string | undefined {
    return this.authorityValue;
  }
  setAuthority(authority: string | undefined): void {
    this.authorityValue = authority;
  }
  headers(): Fields {
    return this.headerFields;
  }
}

class IncomingResponse {
  private consumed = false;
  constructor(
    private readonly statusValue: number,
    private readonly headerFields: Fields,
    private readonly body: ByteSource,
  ) {}
  status(): number {
    return this.statusValue;
  }
  headers(): Fields {
    return this.headerFields;
  }
  consume(): IncomingBody {
    if (this.consumed) throw undefined;
    this.consumed = true;
    return new IncomingBody(this.body);
  }
}

type ResponseAnswer = { tag: 'ok'; val: IncomingResponse } | { tag: 'err'; val: WasiErrorCode };

/**
 * An outgoing call's response. The guest calls `handle` before it writes
 * the request body (wasi:http streams it), so the call is made when the
 * body is finished — or when the guest waits for the response before
 * finishing it — and at most once.
 */
class FutureIncomingResponse {
  private taken = false;
  private forced = false;
  private answer: ResponseAnswer | undefined;
  constructor(
    private readonly bodyDone: () => boolean,
    private readonly send: () => ResponseAnswer,
  ) {}
  subscribe(): Pollable {
    return new Pollable(undefined, { ready: () => this.forced || this.bodyDone(), force: () => (this.forced = true) });
  }
  get(): unknown {
    if (this.taken) return { tag: 'err', val: undefined };
    if (!this.forced && !this.bodyDone()) return undefined;
    this.taken = true;
    this.answer ??= this.send();
    return { tag: 'ok', val: this.answer };
  }
}

/** Refused by the allow-list, as opposed to allowed and then failed. */
function isAllowed(answer: OutgoingAnswer): boolean {
  return answer.ok || answer.error.tag !== 'HTTP-request-denied';
}

/** What the result shows of one outgoing call. */
function outgoingRecord(call: OutgoingCall, answer: OutgoingAnswer): OutgoingRecord {
  const record: OutgoingRecord = { authority: clip(call.authority), pathWithQuery: clip(call.pathWithQuery), allowed: isAllowed(answer) };
  if (answer.ok) record.status = answer.status;
  else {
    if (answer.reason !== undefined) record.error = answer.reason;
    if (answer.limit !== undefined) record.limit = answer.limit;
  }
  return record;
}

function clip(text: string): string {
  return text.length > RECORDED_TEXT_CHARS ? `${text.slice(0, RECORDED_TEXT_CHARS)}…` : text;
}

/** Lists the call, or only counts it once the request has listed MAX_OUTGOING_RECORDS. */
function recordOutgoing(record: ExchangeRecord, call: OutgoingCall, answer: OutgoingAnswer): void {
  if (record.outgoing.length < MAX_OUTGOING_RECORDS) record.outgoing.push(outgoingRecord(call, answer));
  else record.droppedOutgoing += 1;
}

/** Terminal and file-system resources exist as types only: the host never hands one out. */
class Unavailable {}

export interface ExchangeInput {
  method: string;
  pathWithQuery: string;
  scheme: 'http' | 'https';
  authority: string;
  headers: Array<[string, string]>;
  body: Uint8Array;
}

export interface Exchange {
  request: IncomingRequest;
  outparam: ResponseOutparam;
  /** The guest's answer, once `handle` set it. */
  result(): ResponseResult | undefined;
  record: ExchangeRecord;
}

export interface ComponentHost {
  /** The import object; bound once, when the (pre-warmed) instance is created. */
  imports: Record<string, Record<string, unknown>>;
  /** Points the host at one request: logs and outgoing calls from now on belong to it. */
  begin(input: ExchangeInput, outgoing: OutgoingHandler): Exchange;
}

const METHODS = new Set(['get', 'head', 'post', 'put', 'delete', 'connect', 'options', 'trace', 'patch']);

function wasiMethod(method: string): WasiMethod {
  const lower = method.toLowerCase();
  return METHODS.has(lower) ? { tag: lower } : { tag: 'other', val: method };
}

export function methodName(method: WasiMethod): string {
  return method.tag === 'other' ? (method.val ?? 'GET') : method.tag.toUpperCase();
}

/** Performs (or refuses) one outgoing call; `firstByteTimeoutNs` is the guest's own, when it set one. */
export type OutgoingHandler = (call: OutgoingCall, firstByteTimeoutNs?: bigint) => OutgoingAnswer;

interface Current {
  record: ExchangeRecord;
  logBytes: number;
  outgoing: OutgoingHandler;
}

/**
 * The host of one instance. A fetch-event instance answers one request, so
 * a host serves one exchange too; it is created with the instance, before
 * the request is known, so the instance can be pre-warmed. Output written
 * before `begin` (the guest's start-up) is dropped.
 */
export function createComponentHost(limits: HostLimits): ComponentHost {
  let current: Current | undefined;
  const logSink = (stream: 'stdout' | 'stderr') => {
    let pending = '';
    return new OutputStream((bytes) => {
      pending += decoder.decode(bytes, { stream: true });
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        if (current === undefined) continue;
        if (current.logBytes + line.length > limits.maxLogBytes) current.record.droppedLogBytes += line.length;
        else {
          current.logBytes += line.length;
          current.record.logs.push({ stream, line });
        }
      }
      return true;
    });
  };
  const stdout = logSink('stdout');
  const stderr = logSink('stderr');
  const refuseAll = (): OutgoingAnswer => ({ ok: false, error: { tag: 'HTTP-request-denied' } });

  const handleOutgoing = (outgoingRequest: OutgoingRequest, options: RequestOptions | undefined): FutureIncomingResponse => {
    const exchange = current;
    const firstByteTimeout = options?.firstByteTimeout();
    const send = (): ResponseAnswer => {
      const scheme = outgoingRequest.schemeValue;
      const call: OutgoingCall = {
        method: methodName(outgoingRequest.methodValue),
        scheme: scheme === undefined ? 'https' : scheme.tag === 'other' ? scheme.val : scheme.tag.toLowerCase(),
        authority: outgoingRequest.authorityValue ?? '',
        pathWithQuery: outgoingRequest.path ?? '/',
        headers: outgoingRequest.headers().textPairs(),
        body: outgoingRequest.requestBody?.bytes() ?? new Uint8Array(0),
      };
      // A call made after its exchange ended (a pre-warmed instance's start-up) is refused.
      const result = exchange !== undefined && exchange === current ? exchange.outgoing(call, firstByteTimeout) : refuseAll();
      if (exchange !== undefined) recordOutgoing(exchange.record, call, result);
      if (!result.ok) return { tag: 'err', val: result.error };
      return { tag: 'ok', val: new IncomingResponse(result.status, Fields.locked(result.headers), result.body) };
    };
    const bodyDone = () => outgoingRequest.requestBody === undefined || outgoingRequest.requestBody.finished;
    return new FutureIncomingResponse(bodyDone, send);
  };

  // The guest constructs these with headers only; the exchange's limits come from here.
  const ResponseClass = class extends OutgoingResponse {
    constructor(headers: Fields) {
      super(headers, limits.maxBodyBytes);
    }
  };
  const RequestClass = class extends OutgoingRequest {
    constructor(headers: Fields) {
      super(headers, limits.maxBodyBytes);
    }
  };

  const monotonic = {
    now: () => process.hrtime.bigint(),
    resolution: () => 1n,
    subscribeInstant: (when: bigint) => new Pollable(when),
    subscribeDuration: (duration: bigint) => new Pollable(process.hrtime.bigint() + duration),
  };
  const wallClock = {
    now: () => {
      const ms = Date.now();
      return { seconds: BigInt(Math.floor(ms / 1000)), nanoseconds: (ms % 1000) * 1_000_000 };
    },
    resolution: () => ({ seconds: 0n, nanoseconds: 1_000_000 }),
  };
  const random = {
    getRandomBytes: (len: bigint) => randomBytes(Number(len)),
    getRandomU64: () => {
      const buffer = new BigUint64Array(1);
      randomFillSync(buffer);
      return buffer[0] as bigint;
    },
  };
  const noTerminal = () => undefined;
  const imports: Record<string, Record<string, unknown>> = {
    'wasi:cli/stdin': { getStdin: () => new InputStream(new Uint8Array(0)) },
    'wasi:cli/stdout': { getStdout: () => stdout },
    'wasi:cli/stderr': { getStderr: () => stderr },
    'wasi:cli/terminal-input': { TerminalInput: Unavailable },
    'wasi:cli/terminal-output': { TerminalOutput: Unavailable },
    'wasi:cli/terminal-stdin': { getTerminalStdin: noTerminal },
    'wasi:cli/terminal-stdout': { getTerminalStdout: noTerminal },
    'wasi:cli/terminal-stderr': { getTerminalStderr: noTerminal },
    'wasi:clocks/monotonic-clock': monotonic,
    'wasi:clocks/wall-clock': wallClock,
    'wasi:filesystem/preopens': { getDirectories: () => [] },
    'wasi:filesystem/types': { Descriptor: Unavailable, filesystemErrorCode: () => undefined },
    'wasi:http/outgoing-handler': { handle: handleOutgoing },
    'wasi:http/types': {
      Fields,
      FutureIncomingResponse,
      FutureTrailers,
      IncomingBody,
      IncomingRequest,
      IncomingResponse,
      OutgoingBody,
      OutgoingRequest: RequestClass,
      OutgoingResponse: ResponseClass,
      RequestOptions,
      ResponseOutparam,
      httpErrorCode: () => undefined,
    },
    'wasi:io/error': { Error: WasiError },
    'wasi:io/poll': { Pollable, poll },
    'wasi:io/streams': { InputStream, OutputStream },
    'wasi:random/random': random,
  };
  const begin = (input: ExchangeInput, outgoing: OutgoingHandler): Exchange => {
    const record: ExchangeRecord = { logs: [], droppedLogBytes: 0, outgoing: [], droppedOutgoing: 0 };
    current = { record, logBytes: 0, outgoing };
    let answer: ResponseResult | undefined;
    const outparam = new ResponseOutparam((result) => {
      answer = result;
    });
    const request = new IncomingRequest(
      wasiMethod(input.method),
      input.pathWithQuery,
      input.scheme === 'https' ? { tag: 'HTTPS' } : { tag: 'HTTP' },
      input.authority,
      Fields.locked(input.headers),
      input.body,
    );
    return { request, outparam, result: () => answer, record };
  };
  return { imports, begin };
}

export { OutgoingResponse };
