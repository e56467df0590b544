/**
 * Applications this process has recently found to be their owner's, so an
 * upload does not look its application up again (issue 16: the lookup was
 * one of the upload's two database round trips). Only the pair
 * (owner, application) is remembered, never the row: names and notes change,
 * the owner of an application does not.
 *
 * A deletion through this process forgets the application at once; one
 * through another API process is noticed within the TTL, and meanwhile the
 * upload's insert fails on its foreign key, which the upload answers with the
 * same 404 (after having read the body, the only difference).
 */
export const KNOWN_APPLICATIONS_TTL_MS = 5_000;
/** Entries kept at most; past it the map is emptied (lookups simply happen again). */
export const KNOWN_APPLICATIONS_MAX = 10_000;

export class KnownApplications {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly ttlMs = KNOWN_APPLICATIONS_TTL_MS,
    private readonly maxEntries = KNOWN_APPLICATIONS_MAX,
  ) {}

  has(ownerId: string, applicationId: string): boolean {
    const key = `${ownerId}/${applicationId}`;
    const until = this.until.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.until.delete(key);
    return false;
  }

  remember(ownerId: string, applicationId: string): void {
    if (this.until.size >= this.maxEntries) this.until.clear();
    this.until.set(`${ownerId}/${applicationId}`, Date.now() + this.ttlMs);
  }

  forget(ownerId: string, applicationId: string): void {
    this.until.delete(`${ownerId}/${applicationId}`);
  }
}
