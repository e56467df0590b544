import type { Build } from '../store/metadata/repositories/builds.ts';
import { TERMINAL_BUILD_STATES } from '../store/metadata/schema.ts';

/**
 * Builds that ended (and whose log was moved to the object store) never
 * change again, and they are what clients poll hardest (CLIs, dashboards,
 * CI waiting on a result). Keeping them in memory for a few seconds takes
 * the database off that path. Deletions through this process clear the
 * cache at once; another API instance's deletion is seen within the TTL.
 */
export class FinishedBuildCache {
  /** Each ended build with its answer, serialized once by the route. */
  private readonly entries = new Map<string, { ownerId: string; body: string; until: number }>();

  constructor(
    private readonly ttlMs = 5_000,
    private readonly maxEntries = 10_000,
  ) {}

  /** The serialized answer of an ended build of this owner, while it is fresh. */
  get(ownerId: string, buildId: string): string | undefined {
    const entry = this.entries.get(buildId);
    if (!entry) return undefined;
    if (entry.until < Date.now() || entry.ownerId !== ownerId) {
      if (entry.until < Date.now()) this.entries.delete(buildId);
      return undefined;
    }
    return entry.body;
  }

  /** Keeps `body` (the build's serialized answer) if the build has ended for good; anything else is not cached. */
  remember(build: Build, body: string): void {
    if (!TERMINAL_BUILD_STATES.includes(build.state) || !build.logKey) return;
    if (this.entries.size >= this.maxEntries) this.entries.clear();
    this.entries.set(build.id, { ownerId: build.ownerId, body, until: Date.now() + this.ttlMs });
  }

  /** Called when versions or applications are deleted. */
  clear(): void {
    this.entries.clear();
  }
}
