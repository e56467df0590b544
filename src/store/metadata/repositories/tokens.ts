import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { and, desc, eq, isNull } from 'drizzle-orm';
import type { Executor } from '../database.ts';
import { tokens, type TokenKind } from '../schema.ts';

export type TokenRecord = typeof tokens.$inferSelect;

/** Tokens are shown once; only their sha256 is stored. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

const PREFIX: Record<TokenKind, string> = { admin: 'kiln_adm_', owner: 'kiln_own_', worker: 'kiln_wrk_', edge: 'kiln_edg_' };

export function generateSecret(kind: TokenKind): string {
  return PREFIX[kind] + randomBytes(32).toString('base64url');
}

export interface TokenRepository {
  create(input: { kind: TokenKind; ownerId: string | null; name: string; secret?: string }): Promise<{ record: TokenRecord; secret: string }>;
  findActiveBySecret(secret: string): Promise<TokenRecord | undefined>;
  listForOwner(ownerId: string): Promise<TokenRecord[]>;
  /** Returns false when no such active token belongs to the owner. */
  revoke(ownerId: string, tokenId: string): Promise<boolean>;
  hasKind(kind: TokenKind): Promise<boolean>;
}

export class SqlTokenRepository implements TokenRepository {
  constructor(private readonly db: Executor) {}

  async create(input: { kind: TokenKind; ownerId: string | null; name: string; secret?: string }): Promise<{ record: TokenRecord; secret: string }> {
    const secret = input.secret ?? generateSecret(input.kind);
    const [record] = await this.db
      .insert(tokens)
      .values({ id: randomUUID(), kind: input.kind, ownerId: input.ownerId, name: input.name, secretHash: hashSecret(secret) })
      .returning();
    if (!record) throw new Error('insert returned no row');
    return { record, secret };
  }

  async findActiveBySecret(secret: string): Promise<TokenRecord | undefined> {
    const [row] = await this.db
      .select()
      .from(tokens)
      .where(and(eq(tokens.secretHash, hashSecret(secret)), isNull(tokens.revokedAt)));
    return row;
  }

  listForOwner(ownerId: string): Promise<TokenRecord[]> {
    return this.db.select().from(tokens).where(eq(tokens.ownerId, ownerId)).orderBy(desc(tokens.createdAt));
  }

  async revoke(ownerId: string, tokenId: string): Promise<boolean> {
    const rows = await this.db
      .update(tokens)
      .set({ revokedAt: new Date() })
      .where(and(eq(tokens.id, tokenId), eq(tokens.ownerId, ownerId), isNull(tokens.revokedAt)))
      .returning({ id: tokens.id });
    return rows.length > 0;
  }

  async hasKind(kind: TokenKind): Promise<boolean> {
    const rows = await this.db.select({ id: tokens.id }).from(tokens).where(eq(tokens.kind, kind)).limit(1);
    return rows.length > 0;
  }
}
