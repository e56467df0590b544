/**
 * In-process news about builds, for parts of the API that react to them
 * without being on the request path that caused them (the test bed compiles
 * a module on its runners when its build succeeds). Listeners must not
 * throw and must not block: they are told after the state is committed.
 */
import type { Build } from '../store/metadata/repositories/builds.ts';

export type BuildListener = (build: Build) => void;

export class BuildEvents {
  private readonly succeededListeners: BuildListener[] = [];

  onSucceeded(listener: BuildListener): () => void {
    this.succeededListeners.push(listener);
    return () => {
      const index = this.succeededListeners.indexOf(listener);
      if (index !== -1) this.succeededListeners.splice(index, 1);
    };
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
}
