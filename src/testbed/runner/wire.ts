/**
 * The API ↔ runner connection: one persistent stream (a pipe to a local
 * runner, an upgraded HTTP connection to a remote one) carrying frames of
 * V8's structured-clone serialization, each behind a 4-byte length. It is
 * symmetric: either side asks (`request`) and answers (`handle`) — the API
 * asks runners to run calls, runners ask the API for artifacts.
 *
 * Why this shape: a call through the preview must add well under a
 * millisecond, so there is no HTTP request per call, no JSON of bodies
 * (byte arrays cross as bytes) and no connection set-up (decision 0012).
 */
import type { Duplex } from 'node:stream';
import { deserialize, serialize } from 'node:v8';
import { PlatformError, UserError, type UserErrorKind } from '../../errors.ts';

/** A frame above this closes the connection: neither side can make the other buffer without bound. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** An error as it crosses the wire: which family it is, so the other side can rethrow the same kind. */
export type WireError = { family: 'user'; kind: UserErrorKind; code: string; message: string } | { family: 'platform'; code: string; message: string };

type Frame = { t: 'ask'; id: number; op: string; body: unknown } | { t: 'ok'; id: number; body: unknown } | { t: 'err'; id: number; error: WireError } | { t: 'note'; op: string; body: unknown };

export type Handler = (body: unknown) => Promise<unknown> | unknown;

/** The connection closed (or broke) before the answer came. */
export class PeerClosedError extends Error {
  constructor(readonly reason: string) {
    super(`the test bed runner connection closed: ${reason}`);
    this.name = 'PeerClosedError';
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class Peer {
  private readonly pending = new Map<number, Pending>();
  private readonly handlers = new Map<string, Handler>();
  private readonly noteHandlers = new Map<string, (body: unknown) => void>();
  private readonly closeListeners: Array<(reason: string) => void> = [];
  private nextId = 1;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private closedReason: string | undefined;

  constructor(
    private readonly stream: Duplex,
    private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
  ) {
    stream.on('data', (chunk: Buffer) => this.receive(chunk));
    stream.on('error', (error) => this.close(error.message));
    stream.on('close', () => this.close('the other side went away'));
    stream.on('end', () => this.close('the other side ended the connection'));
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  handle(op: string, handler: Handler): void {
    this.handlers.set(op, handler);
  }

  onNote(op: string, listener: (body: unknown) => void): void {
    this.noteHandlers.set(op, listener);
  }

  onClose(listener: (reason: string) => void): void {
    if (this.closedReason !== undefined) listener(this.closedReason);
    else this.closeListeners.push(listener);
  }

  request<T>(op: string, body: unknown): Promise<T> {
    if (this.closedReason !== undefined) return Promise.reject(new PeerClosedError(this.closedReason));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.write({ t: 'ask', id, op, body });
    });
  }

  /** One-way message: no answer is expected. */
  notify(op: string, body: unknown): void {
    if (this.closedReason === undefined) this.write({ t: 'note', op, body });
  }

  close(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.buffered = [];
    for (const pending of this.pending.values()) pending.reject(new PeerClosedError(reason));
    this.pending.clear();
    this.stream.destroy();
    for (const listener of this.closeListeners.splice(0)) listener(reason);
  }

  private write(frame: Frame): void {
    let payload: Buffer;
    try {
      payload = serialize(frame);
    } catch (error) {
      // Only plain data crosses; a value that cannot is a bug on this side, reported to the asker.
      if (frame.t === 'ask') this.settle({ t: 'err', id: frame.id, error: toWire(error) });
      else if (frame.t === 'ok') this.write({ t: 'err', id: frame.id, error: toWire(error) });
      return;
    }
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(payload.length, 0);
    this.stream.write(Buffer.concat([header, payload]));
  }

  private receive(chunk: Buffer): void {
    if (this.closedReason !== undefined) return;
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    // A large frame arrives in many chunks: join them once it is complete, not on every chunk.
    const first = this.buffered[0];
    if (this.buffered.length > 1 && first && first.length >= 4 && this.bufferedBytes < 4 + first.readUInt32BE(0) && first.readUInt32BE(0) <= this.maxFrameBytes) return;
    let data = this.buffered.length === 1 ? chunk : Buffer.concat(this.buffered);
    let offset = 0;
    while (data.length - offset >= 4) {
      const length = data.readUInt32BE(offset);
      if (length > this.maxFrameBytes) {
        this.close(`a frame of ${length} bytes is above the ${this.maxFrameBytes}-byte limit`);
        return;
      }
      if (data.length - offset - 4 < length) break;
      const frame = deserialize(data.subarray(offset + 4, offset + 4 + length)) as Frame;
      offset += 4 + length;
      this.dispatch(frame);
      if (this.closedReason !== undefined) return;
    }
    data = data.subarray(offset);
    this.buffered = data.length > 0 ? [data] : [];
    this.bufferedBytes = data.length;
  }

  private dispatch(frame: Frame): void {
    switch (frame.t) {
      case 'ask':
        void this.answer(frame.id, frame.op, frame.body);
        return;
      case 'note':
        this.noteHandlers.get(frame.op)?.(frame.body);
        return;
      default:
        this.settle(frame);
    }
  }

  private settle(frame: Extract<Frame, { t: 'ok' | 'err' }>): void {
    const pending = this.pending.get(frame.id);
    if (!pending) return;
    this.pending.delete(frame.id);
    if (frame.t === 'ok') pending.resolve(frame.body);
    else pending.reject(fromWire(frame.error));
  }

  private async answer(id: number, op: string, body: unknown): Promise<void> {
    const handler = this.handlers.get(op);
    try {
      if (!handler) throw new PlatformError('runner_unknown_op', `no handler for ${JSON.stringify(op)} on this side of the test bed connection`);
      const value = await handler(body);
      if (this.closedReason === undefined) this.write({ t: 'ok', id, body: value });
    } catch (error) {
      if (this.closedReason === undefined) this.write({ t: 'err', id, error: toWire(error) });
    }
  }
}

export function toWire(error: unknown): WireError {
  if (error instanceof UserError) return { family: 'user', kind: error.kind, code: error.code, message: error.message };
  if (error instanceof PlatformError) return { family: 'platform', code: error.code, message: error.message };
  return { family: 'platform', code: 'runner_error', message: error instanceof Error ? error.message : String(error) };
}

export function fromWire(error: WireError): Error {
  return error.family === 'user' ? new UserError(error.kind, error.code, error.message) : new PlatformError(error.code, error.message);
}
