/**
 * What a worker thread is doing right now, in shared memory so the main
 * thread can read it while the worker is stuck in guest code (a stuck worker
 * cannot answer messages). The pool uses it to tell a request that ran out
 * of time from a timer callback that hung the worker in the background.
 */
export const Activity = { IDLE: 0, MESSAGE: 1, BACKGROUND: 2 } as const;
export type ActivityState = (typeof Activity)[keyof typeof Activity];

export const BUSY_BUFFER_BYTES = 16;

export class BusyMarker {
  private readonly state: Int32Array;
  private readonly since: Float64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.state = new Int32Array(buffer, 0, 1);
    this.since = new Float64Array(buffer, 8, 1);
  }

  set(state: ActivityState): void {
    this.since[0] = Date.now();
    Atomics.store(this.state, 0, state);
  }

  read(): { state: ActivityState; since: number } {
    return { state: Atomics.load(this.state, 0) as ActivityState, since: this.since[0] ?? 0 };
  }
}
