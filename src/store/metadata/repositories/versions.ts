import { and, eq } from 'drizzle-orm';
import { conflict } from '../../../errors.ts';
import type { Executor } from '../database.ts';
import { isUniqueViolation } from '../errors.ts';
import { afterCursor, newestFirst, toPage, type Page, type PageRequest } from '../pagination.ts';
import { versions } from '../schema.ts';

export type Version = typeof versions.$inferSelect;
export type NewVersion = typeof versions.$inferInsert;
export type VersionChanges = Partial<Pick<Version, 'version' | 'phases' | 'config' | 'notes'>>;

export interface VersionRepository {
  create(input: NewVersion): Promise<Version>;
  list(ownerId: string, applicationId: string, page: PageRequest): Promise<Page<Version>>;
  get(ownerId: string, id: string): Promise<Version | undefined>;
  update(ownerId: string, id: string, changes: VersionChanges): Promise<Version | undefined>;
  delete(ownerId: string, id: string): Promise<boolean>;
  listAllForApplication(ownerId: string, applicationId: string): Promise<Version[]>;
}

export class SqlVersionRepository implements VersionRepository {
  constructor(private readonly db: Executor) {}

  async create(input: NewVersion): Promise<Version> {
    try {
      const [row] = await this.db.insert(versions).values(input).returning();
      if (!row) throw new Error('insert returned no row');
      return row;
    } catch (error) {
      if (isUniqueViolation(error)) throw duplicateVersion(input.version);
      throw error;
    }
  }

  async list(ownerId: string, applicationId: string, page: PageRequest): Promise<Page<Version>> {
    const rows = await this.db
      .select()
      .from(versions)
      .where(and(eq(versions.ownerId, ownerId), eq(versions.applicationId, applicationId), afterCursor(versions, page.cursor)))
      .orderBy(...newestFirst(versions))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  listAllForApplication(ownerId: string, applicationId: string): Promise<Version[]> {
    return this.db
      .select()
      .from(versions)
      .where(and(eq(versions.ownerId, ownerId), eq(versions.applicationId, applicationId)));
  }

  async get(ownerId: string, id: string): Promise<Version | undefined> {
    const [row] = await this.db
      .select()
      .from(versions)
      .where(and(eq(versions.id, id), eq(versions.ownerId, ownerId)));
    return row;
  }

  async update(ownerId: string, id: string, changes: VersionChanges): Promise<Version | undefined> {
    try {
      const [row] = await this.db
        .update(versions)
        .set({ ...changes, updatedAt: new Date() })
        .where(and(eq(versions.id, id), eq(versions.ownerId, ownerId)))
        .returning();
      return row;
    } catch (error) {
      if (isUniqueViolation(error) && changes.version !== undefined) throw duplicateVersion(changes.version);
      throw error;
    }
  }

  async delete(ownerId: string, id: string): Promise<boolean> {
    const rows = await this.db
      .delete(versions)
      .where(and(eq(versions.id, id), eq(versions.ownerId, ownerId)))
      .returning({ id: versions.id });
    return rows.length > 0;
  }
}

export function duplicateVersion(version: string) {
  return conflict('version_exists', `version ${version} already exists for this application; bump the version`);
}
