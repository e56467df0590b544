/**
 * In-process news about builds, for parts of the API that react to them
 * without being on the request path that caused them (the test bed compiles
 * a module on its runners when its build succeeds). Listeners must not
 * throw and must not block: they are told after the state is committed.
 *
 * One exception, bounded: a listener registered with onSucceeding is told
 * about a build whose report was judged a success just before that success
 * is committed, and the report waits for it at most `withinMs` (the test bed
 * makes the module ready so that its first request finds it compiled and
 * warm, decision 0040). Its failure or slowness never changes the build.
 */
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { SucceedingBuild } from '../use-cases/worker-jobs.ts';

export type BuildListener = (build: Build) => void;

export type SucceedingListener = (candidate: SucceedingBuild) => Promise<void>;

export class BuildEvents {
  private readonly succeededListeners: BuildListener[] = [];
  private readonly succeedingListeners: Array<{ listener: SucceedingListener; withinMs: number }> = [];

  onSucceeded(listener: BuildListener): () => void {
    return removable(this.succeededListeners, listener);
  }

  /** Told before the success is committed; the report waits for it at most `withinMs`. */
  onSucceeding(listener: SucceedingListener, options: { withinMs: number }): () => void {
    return removable(this.succeedingListeners, { listener, withinMs: options.withinMs });
  }

  succeeded(build: Build): void {
    for (const listener of this.succeededListeners) {
      try {
        listener(build);
      } catch {
        // A listener's failure is its own; the build's result is already committed and answered.
      }
    }
  }

  /** Waits for every onSucceeding listener, each at most its own bound; never rejects. */
  async succeeding(candidate: SucceedingBuild): Promise<void> {
    await Promise.all(this.succeedingListeners.map(({ listener, withinMs }) => within(withinMs, () => listener(candidate))));
  }
}

function removable<T>(list: T[], item: T): () => void {
  list.push(item);
  return () => {
    const index = list.indexOf(item);
    if (index !== -1) list.splice(index, 1);
  };
}

/** Runs `work` and waits for it at most `ms`; what it does after that, or how it fails, is its own. */
async function within(ms: number, work: () => Promise<void>): Promise<void> {
  if (ms <= 0) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    await Promise.race([Promise.resolve().then(work).catch(() => undefined), bound]);
  } finally {
    clearTimeout(timer);
  }
}
