import type { FastifyReply } from 'fastify';
import { UserError } from '../errors.ts';
import type { Build as BuildRow } from '../store/metadata/repositories/builds.ts';
import { TERMINAL_BUILD_STATES } from '../store/metadata/schema.ts';
import { buildJson } from './serialize.ts';
import type { Services } from './services.ts';

/**
 * A follower re-reads the build only when woken (an append or a state change,
 * NOTIFY'd by whichever API instance made it). This slow re-check is the net
 * under a notification lost while a LISTEN connection reconnected.
 */
export const FOLLOW_RECHECK_MS = 10_000;
/** A comment line now and then keeps proxies from closing an idle stream. */
const KEEP_ALIVE_MS = 15_000;

/**
 * Open follow streams per owner, in this API instance: each costs a
 * connection and a listener, and is woken on every append of its build.
 */
export class FollowStreams {
  private readonly open = new Map<string, number>();

  constructor(private readonly perOwner: number) {}

  /** Counts a stream for `ownerId`, or refuses it with 429; call the returned function when it ends. */
  acquire(ownerId: string): () => void {
    const count = this.open.get(ownerId) ?? 0;
    if (count >= this.perOwner) {
      throw new UserError(
        'rate_limited',
        'too_many_follow_streams',
        `this owner already follows ${count} build log(s), the limit (KILN_FOLLOW_STREAMS_PER_OWNER=${this.perOwner}); close one, or read the log without ?follow`,
      );
    }
    this.open.set(ownerId, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(ownerId) ?? 1) - 1;
      if (left > 0) this.open.set(ownerId, left);
      else this.open.delete(ownerId);
    };
  }

  openFor(ownerId: string): number {
    return this.open.get(ownerId) ?? 0;
  }
}

function sseEvent(event: string, data: string): string {
  return `event: ${event}\n${data
    .split('\n')
    .map((line) => `data: ${line}`)
    .join('\n')}\n\n`;
}

const isTerminal = (build: BuildRow) => TERMINAL_BUILD_STATES.includes(build.state);

/**
 * Follows a build's log over SSE: what exists, then each new piece as it is
 * appended, state changes, and an `end` event. It stops without `end` when
 * `stop` aborts (the server shutting down): the CLI then resumes elsewhere.
 */
export async function streamLog(services: Services, initial: BuildRow, reply: FastifyReply, stop: AbortSignal): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  const wakeup = new Wakeup();
  const onStop = () => wakeup.end();
  raw.on('close', onStop);
  stop.addEventListener('abort', onStop, { once: true });
  const unsubscribe = services.logs.subscribe(initial.id, () => wakeup.wake());
  const keepAlive = setInterval(() => raw.write(': keep-alive\n\n'), KEEP_ALIVE_MS);
  let sentBytes = 0;
  let lastSeq = 0;
  let lastState = initial.state;
  try {
    while (!wakeup.ended) {
      const build = await services.builds.getById(initial.id);
      if (!build) break;
      if (build.logKey) {
        const all = await services.logs.read(build);
        if (all.length > sentBytes) raw.write(sseEvent('log', all.subarray(sentBytes).toString('utf8')));
        sentBytes = all.length;
      } else {
        for (const chunk of await services.logs.chunksAfter(build.id, lastSeq)) {
          raw.write(sseEvent('log', chunk.data.toString('utf8')));
          sentBytes += chunk.data.length;
          lastSeq = chunk.seq;
        }
      }
      if (build.state !== lastState) {
        lastState = build.state;
        raw.write(sseEvent('state', JSON.stringify(buildJson(build))));
      }
      if (isTerminal(build) && (build.logKey || build.logBytes <= sentBytes)) {
        raw.write(sseEvent('end', JSON.stringify(buildJson(build))));
        break;
      }
      await wakeup.next(FOLLOW_RECHECK_MS);
    }
  } finally {
    clearInterval(keepAlive);
    unsubscribe();
    stop.removeEventListener('abort', onStop);
    raw.off('close', onStop);
    raw.end();
  }
}

/**
 * A wake that arrives while the follower is reading is kept, not lost: the
 * next wait then returns at once and the follower reads again.
 */
class Wakeup {
  ended = false;
  private pending = false;
  private resolve?: () => void;

  wake(): void {
    this.pending = true;
    this.resolve?.();
  }

  end(): void {
    this.ended = true;
    this.resolve?.();
  }

  next(timeoutMs: number): Promise<void> {
    if (this.pending || this.ended) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.resolve = undefined;
        this.pending = false;
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.resolve = done;
    });
  }
}
