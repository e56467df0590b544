import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, inArray, isNull, lt, sql, type SQL } from 'drizzle-orm';
import { badRequest } from '../../../errors.ts';
import type { Executor } from '../database.ts';
import type { Page } from '../pagination.ts';
import { activeDeployments, applications, deployments, edgeTokenScopes, owners, tokens } from '../schema.ts';
import type { TokenRecord } from './tokens.ts';

export type Deployment = typeof deployments.$inferSelect;
export type NewDeployment = Omit<typeof deployments.$inferInsert, 'id' | 'number' | 'createdAt' | 'withdrawnAt'>;

export interface DeploymentFilters {
  environment?: string;
}

/** A deployment's place in the history; `number` is strictly increasing per application. */
export interface HistoryPageRequest {
  limit: number;
  cursor?: string;
}

/** An active deployment with the names an edge server needs. */
export interface ManifestRow {
  deployment: Deployment;
  applicationName: string;
  ownerName: string;
}

/** Which owners an edge token may read. */
export interface EdgeScope {
  allOwners: boolean;
  ownerIds: string[];
}

export interface DeploymentRepository {
  /**
   * Locks the application row for the rest of the transaction: promotions,
   * withdrawals and version deletions of one application then run one at a
   * time, so "what is active" and the history order always agree.
   * False when the application does not exist or belongs to another owner.
   */
  lockApplication(ownerId: string, applicationId: string): Promise<boolean>;
  /** Records a deployment and makes it the active one of its environment. Call with the application locked. */
  promote(input: NewDeployment): Promise<Deployment>;
  activeIn(ownerId: string, applicationId: string, environment: string): Promise<Deployment | undefined>;
  /** The active deployment of every environment of an application. */
  activeForApplication(ownerId: string, applicationId: string): Promise<Deployment[]>;
  /** Where a version is live (one deployment per environment). */
  activeForVersion(ownerId: string, versionId: string): Promise<Deployment[]>;
  /** Takes deployments out of their environments without a successor (their version is being deleted). */
  withdraw(ownerId: string, deploymentIds: string[]): Promise<void>;
  history(ownerId: string, applicationId: string, filters: DeploymentFilters, page: HistoryPageRequest): Promise<Page<Deployment>>;
  /** The edge manifest: every active deployment of an environment the scope may see. */
  manifest(environment: string, scope: EdgeScope): Promise<ManifestRow[]>;
  /** An artifact an edge token may download: active somewhere, owned by an owner in scope. */
  findVisibleArtifact(sha256: string, scope: EdgeScope): Promise<Deployment | undefined>;
}

export class SqlDeploymentRepository implements DeploymentRepository {
  constructor(private readonly db: Executor) {}

  async lockApplication(ownerId: string, applicationId: string): Promise<boolean> {
    const rows = await this.db
      .select({ id: applications.id })
      .from(applications)
      .where(and(eq(applications.id, applicationId), eq(applications.ownerId, ownerId)))
      .for('update');
    return rows.length > 0;
  }

  async promote(input: NewDeployment): Promise<Deployment> {
    const [row] = await this.db
      .insert(deployments)
      .values({
        ...input,
        id: randomUUID(),
        number: sql`(select coalesce(max(${deployments.number}), 0) + 1 from ${deployments} where ${deployments.applicationId} = ${input.applicationId})`,
      })
      .returning();
    if (!row) throw new Error('insert returned no row');
    await this.db
      .insert(activeDeployments)
      .values({ applicationId: row.applicationId, environment: row.environment, deploymentId: row.id, ownerId: row.ownerId })
      .onConflictDoUpdate({ target: [activeDeployments.applicationId, activeDeployments.environment], set: { deploymentId: row.id } });
    return row;
  }

  async activeIn(ownerId: string, applicationId: string, environment: string): Promise<Deployment | undefined> {
    const [row] = await this.activeWhere(
      and(eq(activeDeployments.ownerId, ownerId), eq(activeDeployments.applicationId, applicationId), eq(activeDeployments.environment, environment)),
    );
    return row;
  }

  activeForApplication(ownerId: string, applicationId: string): Promise<Deployment[]> {
    return this.activeWhere(and(eq(activeDeployments.ownerId, ownerId), eq(activeDeployments.applicationId, applicationId)));
  }

  activeForVersion(ownerId: string, versionId: string): Promise<Deployment[]> {
    return this.activeWhere(and(eq(activeDeployments.ownerId, ownerId), eq(deployments.versionId, versionId)));
  }

  async withdraw(ownerId: string, deploymentIds: string[]): Promise<void> {
    if (deploymentIds.length === 0) return;
    await this.db.delete(activeDeployments).where(and(eq(activeDeployments.ownerId, ownerId), inArray(activeDeployments.deploymentId, deploymentIds)));
    await this.db
      .update(deployments)
      .set({ withdrawnAt: new Date() })
      .where(and(eq(deployments.ownerId, ownerId), inArray(deployments.id, deploymentIds), isNull(deployments.withdrawnAt)));
  }

  async history(ownerId: string, applicationId: string, filters: DeploymentFilters, page: HistoryPageRequest): Promise<Page<Deployment>> {
    const before = decodeHistoryCursor(page.cursor);
    const rows = await this.db
      .select()
      .from(deployments)
      .where(
        and(
          eq(deployments.ownerId, ownerId),
          eq(deployments.applicationId, applicationId),
          filters.environment ? eq(deployments.environment, filters.environment) : undefined,
          before === undefined ? undefined : lt(deployments.number, before),
        ),
      )
      .orderBy(desc(deployments.number))
      .limit(page.limit + 1);
    if (rows.length <= page.limit) return { items: rows };
    const items = rows.slice(0, page.limit);
    const last = items[items.length - 1];
    return last ? { items, nextCursor: encodeHistoryCursor(last.number) } : { items };
  }

  async manifest(environment: string, scope: EdgeScope): Promise<ManifestRow[]> {
    const owned = scopeCondition(scope);
    if (owned === false) return [];
    return this.db
      .select({ deployment: deployments, applicationName: applications.name, ownerName: owners.name })
      .from(activeDeployments)
      .innerJoin(deployments, eq(deployments.id, activeDeployments.deploymentId))
      .innerJoin(applications, eq(applications.id, activeDeployments.applicationId))
      .innerJoin(owners, eq(owners.id, activeDeployments.ownerId))
      .where(and(eq(activeDeployments.environment, environment), owned))
      .orderBy(asc(activeDeployments.applicationId));
  }

  async findVisibleArtifact(sha256: string, scope: EdgeScope): Promise<Deployment | undefined> {
    const owned = scopeCondition(scope);
    if (owned === false) return undefined;
    const [row] = await this.db
      .select({ deployment: deployments })
      .from(activeDeployments)
      .innerJoin(deployments, eq(deployments.id, activeDeployments.deploymentId))
      .where(and(eq(deployments.sha256, sha256), owned))
      .limit(1);
    return row?.deployment;
  }

  private async activeWhere(condition: SQL | undefined): Promise<Deployment[]> {
    const rows = await this.db
      .select({ deployment: deployments })
      .from(activeDeployments)
      .innerJoin(deployments, eq(deployments.id, activeDeployments.deploymentId))
      .where(condition)
      .orderBy(asc(activeDeployments.environment));
    return rows.map((row) => row.deployment);
  }
}

/** undefined = every owner; false = nobody (an empty chosen set). */
function scopeCondition(scope: EdgeScope): SQL | undefined | false {
  if (scope.allOwners) return undefined;
  if (scope.ownerIds.length === 0) return false;
  return inArray(activeDeployments.ownerId, scope.ownerIds);
}

function encodeHistoryCursor(number: number): string {
  return Buffer.from(JSON.stringify({ before: number })).toString('base64url');
}

function decodeHistoryCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    const before = typeof parsed === 'object' && parsed !== null ? (parsed as { before?: unknown }).before : undefined;
    if (typeof before === 'number' && Number.isInteger(before) && before > 0) return before;
  } catch {
    // fall through to the error below
  }
  throw badRequest('invalid_cursor', 'cursor is not one this API returned; start again without it');
}

// ── edge tokens ─────────────────────────────────────────────────────────────

export interface EdgeToken {
  record: TokenRecord;
  scope: EdgeScope;
}

/**
 * The owners each edge token may read. Kept beside the deployments because
 * the scope only ever filters deployments (the manifest and its artifacts).
 */
export class SqlEdgeTokenRepository {
  constructor(private readonly db: Executor) {}

  async setScope(tokenId: string, scope: EdgeScope): Promise<void> {
    const values = { tokenId, allOwners: scope.allOwners, ownerIds: scope.allOwners ? [] : scope.ownerIds };
    await this.db.insert(edgeTokenScopes).values(values).onConflictDoUpdate({ target: edgeTokenScopes.tokenId, set: values });
  }

  /** No scope row means no access: the safe default for an edge token made some other way. */
  async scopeOf(tokenId: string): Promise<EdgeScope> {
    const [row] = await this.db.select().from(edgeTokenScopes).where(eq(edgeTokenScopes.tokenId, tokenId));
    return row ? { allOwners: row.allOwners, ownerIds: row.ownerIds } : { allOwners: false, ownerIds: [] };
  }

  async list(): Promise<EdgeToken[]> {
    const rows = await this.db
      .select({ record: tokens, scope: edgeTokenScopes })
      .from(tokens)
      .leftJoin(edgeTokenScopes, eq(edgeTokenScopes.tokenId, tokens.id))
      .where(eq(tokens.kind, 'edge'))
      .orderBy(desc(tokens.createdAt));
    return rows.map(({ record, scope }) => ({ record, scope: scope ? { allOwners: scope.allOwners, ownerIds: scope.ownerIds } : { allOwners: false, ownerIds: [] } }));
  }

  /** False when no such active edge token exists. */
  async revoke(tokenId: string): Promise<boolean> {
    const rows = await this.db
      .update(tokens)
      .set({ revokedAt: new Date() })
      .where(and(eq(tokens.id, tokenId), eq(tokens.kind, 'edge'), isNull(tokens.revokedAt)))
      .returning({ id: tokens.id });
    return rows.length > 0;
  }

  /** The ids among `ownerIds` that name no owner. */
  async unknownOwners(ownerIds: string[]): Promise<string[]> {
    if (ownerIds.length === 0) return [];
    const found = await this.db.select({ id: owners.id }).from(owners).where(inArray(owners.id, ownerIds));
    const known = new Set(found.map((row) => row.id));
    return ownerIds.filter((id) => !known.has(id));
  }
}
