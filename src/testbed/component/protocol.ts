/**
 * The narrow, message-style seam of component execution. Whatever hosts the
 * engine (today a worker thread of this process; a runner process later)
 * receives these messages and answers them, one at a time. Everything is
 * structured-clone data: no functions, no handles.
 */
import type { ExchangeInput, ExchangeRecord } from './wasi-http-host.ts';

/** An allowed outgoing origin: the component may call exactly these authorities. */
export interface AllowedOrigin {
  name: string;
  /** e.g. `http://127.0.0.1:8081` */
  origin: string;
}

export interface PrepareMessage {
  type: 'prepare';
  sha256: string;
  /** The component's bytes; sent once per sha256 per engine. */
  component: Uint8Array;
  /** Maximum of every memory the core modules define, in 64 KiB pages. */
  memoryCapPages: number;
  /** jco's output for this component from an earlier prepare (skips the transpile). */
  transpiled?: TranspiledFiles;
}

/** File name → bytes, as jco transpile produced them (the glue and its core modules). */
export type TranspiledFiles = Record<string, Uint8Array>;

export interface HandleMessage {
  type: 'handle';
  sha256: string;
  request: ExchangeInput;
  allowed: AllowedOrigin[];
  limits: { maxBodyBytes: number; maxLogBytes: number };
  /** Outgoing calls the request may send (the Proxy-Wasm HTTP call limit, maxHttpCalls). */
  maxOutgoingCalls: number;
}

export type EngineMessage = PrepareMessage | HandleMessage;

export interface PrepareReply {
  type: 'prepared';
  sha256: string;
  transpileMs: number;
  compileMs: number;
  instantiateMs: number;
  /** What was transpiled, so the host can hand it to a replacement engine. */
  transpiled: TranspiledFiles;
}

export interface HandleReply {
  type: 'handled';
  outcome: 'ok' | 'no_response' | 'error_response' | 'trap';
  message?: string;
  response?: { status: number; headers: Array<[string, string]>; body: Uint8Array; truncated: boolean };
  record: ExchangeRecord;
  timings: { instantiateMs: number; handleMs: number; prewarmed: boolean };
}

export interface FailureReply {
  type: 'failed';
  /** not_runnable: the component cannot be transpiled/instantiated (the user's); internal: ours. */
  code: 'not_runnable' | 'not_prepared' | 'internal';
  message: string;
}

export type EngineReply = PrepareReply | HandleReply | FailureReply;
