/**
 * The calls a filter has in flight, seen from the main thread: HTTP and
 * gRPC calls (answered once) and live gRPC streams (answered in updates as
 * their messages arrive). Answers are handed out one at a time as they
 * come, the oldest round first, so a filter's callbacks run in the order a
 * proxy would run them and a bidirectional stream can go back and forth
 * (decision 0045).
 *
 * Rounds: a call made while an answer of round r is delivered is of round
 * r + 1 (the calls of the step that started the exchange are round 0).
 * Updates of a stream keep the stream's round: a conversation on one stream
 * is bounded by its bytes and its timeout, not by rounds.
 */
import type { LiveGrpcStream } from './grpc-upstream.ts';
import type { HttpResponseData } from './http-message.ts';
import type { GrpcStreamWrite, OutgoingCall } from './protocol.ts';

export interface CallPerformer {
  /** Performs an HTTP or gRPC call; null when it could not be made. */
  call(call: OutgoingCall): Promise<HttpResponseData | null>;
  /** Opens a gRPC stream live; undefined: answer it as a call instead (a canned response, say). */
  openStream(call: OutgoingCall): LiveGrpcStream | undefined;
  /** A stream's final answer (for the exchange's call record). */
  streamEnded?(call: OutgoingCall, response: HttpResponseData): void;
}

export interface Arrival {
  token: number;
  contextId: number;
  response: HttpResponseData | null;
  /** More updates of this stream follow. */
  partial: boolean;
  round: number;
}

/** A filter made calls from its answers past maxHttpCallRounds. */
export class CallRoundsExceeded extends Error {
  constructor(readonly maxRounds: number) {
    super(`the filter kept making HTTP calls from their responses: more than ${maxRounds} rounds (limit maxHttpCallRounds)`);
  }
}

export class CallDriver {
  /** Tokens whose answer (or stream's final update) has not been handed out. */
  private readonly inFlight = new Set<number>();
  private readonly streams = new Map<number, LiveGrpcStream>();
  private readonly ready: Arrival[] = [];
  private wake: (() => void) | undefined;

  constructor(
    private readonly performer: CallPerformer,
    private readonly maxRounds: number,
  ) {}

  get idle(): boolean {
    return this.inFlight.size === 0;
  }

  /** Starts the calls of one step; throws CallRoundsExceeded past the limit. */
  launch(calls: readonly OutgoingCall[], round: number): void {
    if (calls.length > 0 && round >= this.maxRounds) throw new CallRoundsExceeded(this.maxRounds);
    for (const call of calls) {
      this.inFlight.add(call.token);
      const live = call.grpc?.kind === 'stream' ? this.performer.openStream(call) : undefined;
      if (live) {
        this.streams.set(call.token, live);
        this.listen(call, live, round);
      } else {
        void this.performer.call(call).then((response) => this.arrive({ token: call.token, contextId: call.contextId, response, partial: false, round }));
      }
    }
  }

  /** Applies a step's stream writes, in order; a cancel also drops what arrived and was not handed out. */
  apply(writes: readonly GrpcStreamWrite[]): void {
    for (const write of writes) {
      const stream = this.streams.get(write.token);
      if (write.kind === 'send') {
        stream?.write(write.framed, write.end);
        continue;
      }
      stream?.cancel();
      this.forget(write.token);
    }
  }

  /** The next answer or update; undefined when nothing is in flight any more. */
  async next(): Promise<Arrival | undefined> {
    for (;;) {
      const arrival = this.ready.shift();
      if (arrival) {
        if (!arrival.partial) this.forget(arrival.token);
        return arrival;
      }
      if (this.inFlight.size === 0) return undefined;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Resets every open stream (the exchange ended or failed); answers still coming are dropped. */
  close(): void {
    for (const stream of this.streams.values()) stream.cancel();
    this.streams.clear();
    this.inFlight.clear();
    this.ready.length = 0;
    this.wake?.();
  }

  private listen(call: OutgoingCall, live: LiveGrpcStream, round: number): void {
    void live.next().then((update) => {
      if (!this.streams.has(call.token)) return;
      if (update.final) this.performer.streamEnded?.(call, update.response);
      this.arrive({ token: call.token, contextId: call.contextId, response: update.response, partial: !update.final, round });
      if (!update.final) this.listen(call, live, round);
    });
  }

  private arrive(arrival: Arrival): void {
    if (!this.inFlight.has(arrival.token)) return;
    // Answers waiting together go oldest round first, then in the order they were made (as a round answered
    // at once always was); a stream's updates share a token and keep their order.
    const at = this.ready.findIndex((queued) => queued.round > arrival.round || (queued.round === arrival.round && queued.token > arrival.token));
    if (at === -1) this.ready.push(arrival);
    else this.ready.splice(at, 0, arrival);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private forget(token: number): void {
    this.inFlight.delete(token);
    this.streams.delete(token);
    for (let i = this.ready.length - 1; i >= 0; i--) if (this.ready[i]?.token === token) this.ready.splice(i, 1);
  }
}
