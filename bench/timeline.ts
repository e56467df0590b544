/**
 * A timeline of one process, for `bench/pipeline.ts --timeline`: what a
 * build's own phases wait for when the bench's API, embedded database and
 * worker share one process (as `kiln serve` runs them).
 *
 * Recorded, each with its time on the process's monotonic clock:
 * - HTTP requests the process served (diagnostics channels of node:http);
 * - every program it started (`child_process.spawn`, wrapped): how long the
 *   call held the event loop — Node waits for the fork and the exec, and the
 *   fork of a large process copies its page tables;
 * - event-loop stalls: gaps of a 1 ms interval timer above `stallMs`;
 * - marks the bench adds itself (stage boundaries, the client's steps).
 *
 * Only for benches: it replaces `spawn` in the process (and puts it back).
 */
import childProcess from 'node:child_process';
import diagnostics from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { syncBuiltinESMExports } from 'node:module';

export interface TimelineEvent {
  /** ms on performance.now()'s clock. */
  at: number;
  /** ms the event lasted (0 for a mark). */
  ms: number;
  what: string;
}

export interface Timeline {
  mark(what: string, at?: number, ms?: number): void;
  /** Times every call of an async method (on a prototype) as `label`. */
  wrap<T extends object>(target: T, method: keyof T & string, label: string): void;
  /** Events that overlap [from, to], in time order. */
  between(from: number, to: number): TimelineEvent[];
  stop(): void;
}

export function startTimeline(options: { stallMs?: number } = {}): Timeline {
  const stallMs = options.stallMs ?? 8;
  const events: TimelineEvent[] = [];
  const mark = (what: string, at = performance.now(), ms = 0): void => void events.push({ at, ms, what });

  // Event-loop stalls.
  let last = performance.now();
  const probe = setInterval(() => {
    const now = performance.now();
    if (now - last > stallMs) mark('event loop stalled', last, now - last);
    last = now;
  }, 1);
  probe.unref();

  // Programs started (spawn, and execFile, which calls the module's own spawn).
  const originals = { spawn: childProcess.spawn, execFile: childProcess.execFile };
  const timedStart = <F extends (...args: never[]) => childProcess.ChildProcess>(original: F, how: string): F =>
    function (this: unknown, ...args: Parameters<F>) {
      const started = performance.now();
      const child = original.apply(this, args);
      const program = String(args[0]).split('/').at(-1);
      const argv = Array.isArray(args[1]) ? (args[1] as string[]) : [];
      const label = program === 'bash' ? `bash ${argv.includes('kiln-launch') ? 'launcher' : ''}` : `${program} ${argv.slice(0, 2).join(' ')}`;
      mark(`${how} ${label} (event loop held)`, started, performance.now() - started);
      return child;
    } as F;
  childProcess.spawn = timedStart(originals.spawn, 'spawn');
  childProcess.execFile = timedStart(originals.execFile as unknown as (...args: never[]) => childProcess.ChildProcess, 'execFile') as unknown as typeof childProcess.execFile;
  syncBuiltinESMExports();

  // Requests served.
  const started = new WeakMap<object, number>();
  const onStart = (message: unknown): void => {
    const { request } = message as { request: IncomingMessage };
    started.set(request, performance.now());
  };
  const onFinish = (message: unknown): void => {
    const { request } = message as { request: IncomingMessage; response: ServerResponse };
    const at = started.get(request);
    if (at === undefined) return;
    const url = (request.url ?? '').replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, ':id').replace(/\?.*$/, '');
    mark(`HTTP ${request.method} ${url}`, at, performance.now() - at);
  };
  diagnostics.subscribe('http.server.request.start', onStart);
  diagnostics.subscribe('http.server.response.finish', onFinish);

  const unwrap: Array<() => void> = [];
  return {
    mark,
    wrap(target, method, label) {
      const original = target[method] as unknown as (...args: unknown[]) => Promise<unknown>;
      const timed = async function (this: unknown, ...args: unknown[]) {
        const at = performance.now();
        try {
          return await original.apply(this, args);
        } finally {
          mark(label, at, performance.now() - at);
        }
      };
      Object.assign(target, { [method]: timed });
      unwrap.push(() => Object.assign(target, { [method]: original }));
    },
    between(from, to) {
      return events.filter((event) => event.at <= to && event.at + event.ms >= from).sort((a, b) => a.at - b.at);
    },
    stop() {
      for (const undo of unwrap.splice(0)) undo();
      clearInterval(probe);
      Object.assign(childProcess, originals);
      syncBuiltinESMExports();
      diagnostics.unsubscribe('http.server.request.start', onStart);
      diagnostics.unsubscribe('http.server.response.finish', onFinish);
    },
  };
}
