import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
import { conflict } from '../../../errors.ts';
import type { Executor } from '../database.ts';
import { isUniqueViolation } from '../errors.ts';
import { afterCursor, newestFirst, toPage, type Page, type PageRequest } from '../pagination.ts';
import { applications } from '../schema.ts';

export type Application = typeof applications.$inferSelect;

export interface ApplicationRepository {
  create(ownerId: string, input: { name: string; notes: string }): Promise<Application>;
  list(ownerId: string, page: PageRequest): Promise<Page<Application>>;
  /** undefined when missing or owned by someone else. */
  get(ownerId: string, id: string): Promise<Application | undefined>;
  update(ownerId: string, id: string, changes: { name?: string; notes?: string }): Promise<Application | undefined>;
  delete(ownerId: string, id: string): Promise<boolean>;
}

export class SqlApplicationRepository implements ApplicationRepository {
  private getStatement: ReturnType<SqlApplicationRepository['buildGet']> | undefined;

  constructor(private readonly db: Executor) {}

  async create(ownerId: string, input: { name: string; notes: string }): Promise<Application> {
    try {
      const [row] = await this.db
        .insert(applications)
        .values({ id: randomUUID(), ownerId, name: input.name, notes: input.notes })
        .returning();
      if (!row) throw new Error('insert returned no row');
      return row;
    } catch (error) {
      if (isUniqueViolation(error)) throw duplicateName(input.name);
      throw error;
    }
  }

  async list(ownerId: string, page: PageRequest): Promise<Page<Application>> {
    const rows = await this.db
      .select()
      .from(applications)
      .where(and(eq(applications.ownerId, ownerId), afterCursor(applications, page.cursor)))
      .orderBy(...newestFirst(applications))
      .limit(page.limit + 1);
    return toPage(rows, page.limit);
  }

  async get(ownerId: string, id: string): Promise<Application | undefined> {
    const [row] = await this.preparedGet().execute({ id, ownerId });
    return row;
  }

  /**
   * Every upload and most owner requests start with this lookup: built once
   * (the query builder's cost was a visible part of an upload's CPU, issue
   * 16) and, on PostgreSQL, a named prepared statement.
   */
  private preparedGet() {
    this.getStatement ??= this.buildGet();
    return this.getStatement;
  }

  private buildGet() {
    return this.db
      .select()
      .from(applications)
      .where(and(eq(applications.id, sql.placeholder('id')), eq(applications.ownerId, sql.placeholder('ownerId'))))
      .prepare('kiln_application_of_owner');
  }

  async update(ownerId: string, id: string, changes: { name?: string; notes?: string }): Promise<Application | undefined> {
    try {
      const [row] = await this.db
        .update(applications)
        .set({ ...changes, updatedAt: new Date() })
        .where(and(eq(applications.id, id), eq(applications.ownerId, ownerId)))
        .returning();
      return row;
    } catch (error) {
      if (isUniqueViolation(error) && changes.name !== undefined) throw duplicateName(changes.name);
      throw error;
    }
  }

  async delete(ownerId: string, id: string): Promise<boolean> {
    const rows = await this.db
      .delete(applications)
      .where(and(eq(applications.id, id), eq(applications.ownerId, ownerId)))
      .returning({ id: applications.id });
    return rows.length > 0;
  }
}

function duplicateName(name: string) {
  return conflict('application_exists', `an application named ${JSON.stringify(name)} already exists; pick another name`);
}
