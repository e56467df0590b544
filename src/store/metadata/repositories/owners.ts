import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { Executor } from '../database.ts';
import { owners } from '../schema.ts';

export type Owner = typeof owners.$inferSelect;

export interface OwnerRepository {
  create(name: string): Promise<Owner>;
  get(id: string): Promise<Owner | undefined>;
  getByName(name: string): Promise<Owner | undefined>;
}

export class SqlOwnerRepository implements OwnerRepository {
  constructor(private readonly db: Executor) {}

  async create(name: string): Promise<Owner> {
    const [row] = await this.db.insert(owners).values({ id: randomUUID(), name }).returning();
    if (!row) throw new Error('insert returned no row');
    return row;
  }

  async get(id: string): Promise<Owner | undefined> {
    const [row] = await this.db.select().from(owners).where(eq(owners.id, id));
    return row;
  }

  async getByName(name: string): Promise<Owner | undefined> {
    const [row] = await this.db.select().from(owners).where(eq(owners.name, name));
    return row;
  }
}
