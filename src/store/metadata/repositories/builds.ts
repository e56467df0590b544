import { randomUUID } from 'node:crypto';
import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import type { Executor } from '../database.ts';
import { afterCursor, newestFirst, toPage, type Page, type PageRequest } from '../pagination.ts';
import { builds, type BuildState } from '../schema.ts';

export type Build = typeof builds.$inferSelect;

export interface BuildFilters {
  applicationId?: string;
  versionId?: string;
  state?: BuildState;
}

export interface BuildRepository {
  /** Creates the next build (number = previous + 1) of a version, queued. */
  createQueued(input: { ownerId: string; applicationId: string; versionId: string }): Promise<Build>;
  get(ownerId: string, id: string): Promise<Build | undefined>;
  /** Operator view, used by the worker protocol. */
  getById(id: string): Promise<Build | undefined>;
  list(ownerId: string, filters: BuildFilters, page: PageRequest): Promise<Page<Build>>;
  latestForVersion(versionId: string): Promise<Build | undefined>;
  latestSucceeded(versionId: string): Promise<Build | undefined>;
  hasActiveBuild(versionId: string): Promise<boolean>;
  /** Every build of the given versions (used to delete their objects). */
  listForVersions(versionIds: string[]): Promise<Build[]>;
}

export class SqlBuildRepository implements BuildRepository {
  constructor(private readonly db: Executor) {}

  async createQueued(input: { ownerId: string; applicationId: string; versionId: string }): Promise<Build> {
    const [row] = await this.db
      .insert(builds)
      .values({
        id: randomUUID(),
        ...input,
        state: 'queued',
        number: sql`(select coalesce(max(${builds.number}), 0) + 1 from ${builds} where ${builds.versionId} = ${input.versionId})`,
      })
      .returning();
    if (!row) throw new Error('insert returned no row');
    return row;
  }

  async get(ownerId: string, id: string): Promise<Build | undefined> {
    const [row] = await this.db
      .select()
      .from(builds)
      .where(and(eq(builds.id, id), eq(builds.ownerId, ownerId)));
    return row;
  }

  async getById(id: string): Promise<Build | undefined> {
    const [row] = await this.db.select().from(builds).where(eq(builds.id, id));
    return row;
  }

  async list(ownerId: string, filters: BuildFilters, page: PageRequest): Promise<Page<Build>> {
    const rows = await this.db
      .select()
      .from(builds)
      .where(
        and(
          eq(builds.ownerId, ownerId),
          filters.applicationId ? eq(builds.applicationId, filters.applicationId) : undefined,
          filters.versionId ? eq(builds.versionId, filters.versionId) : undefined,
          filters.state ? eq(builds.state, filters.state) : undefined,
          afterCursor(builds, page.cursor),
        ),
      )
      .orderBy(...newestFirst(builds))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  async latestForVersion(versionId: string): Promise<Build | undefined> {
    const [row] = await this.db.select().from(builds).where(eq(builds.versionId, versionId)).orderBy(desc(builds.number)).limit(1);
    return row;
  }

  async latestSucceeded(versionId: string): Promise<Build | undefined> {
    const [row] = await this.db
      .select()
      .from(builds)
      .where(and(eq(builds.versionId, versionId), eq(builds.state, 'succeeded')))
      .orderBy(desc(builds.number))
      .limit(1);
    return row;
  }

  async hasActiveBuild(versionId: string): Promise<boolean> {
    const rows = await this.db
      .select({ id: builds.id })
      .from(builds)
      .where(and(eq(builds.versionId, versionId), inArray(builds.state, ['queued', 'running'])))
      .limit(1);
    return rows.length > 0;
  }

  listForVersions(versionIds: string[]): Promise<Build[]> {
    if (versionIds.length === 0) return Promise.resolve([]);
    return this.db.select().from(builds).where(inArray(builds.versionId, versionIds));
  }
}
