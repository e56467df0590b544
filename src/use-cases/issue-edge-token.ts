import { badRequest } from '../errors.ts';
import { SqlEdgeTokenRepository, type EdgeScope, type EdgeToken } from '../store/metadata/repositories/deployments.ts';
import { SqlTokenRepository } from '../store/metadata/repositories/tokens.ts';
import type { UseCaseContext } from './context.ts';

export interface EdgeTokenRequest {
  name: string;
  /** The owners it may read; absent: every owner. */
  ownerIds?: string[];
}

/** An edge token and its scope in one transaction: a token never exists without the scope that limits it. */
export async function issueEdgeToken(context: Pick<UseCaseContext, 'database'>, request: EdgeTokenRequest): Promise<{ secret: string; token: EdgeToken }> {
  const unknown = await new SqlEdgeTokenRepository(context.database.db).unknownOwners(request.ownerIds ?? []);
  if (unknown.length > 0) throw badRequest('unknown_owner', `no owner has the id ${unknown.join(', ')}`);
  const scope: EdgeScope = request.ownerIds ? { allOwners: false, ownerIds: request.ownerIds } : { allOwners: true, ownerIds: [] };
  return context.database.db.transaction(async (tx) => {
    const created = await new SqlTokenRepository(tx).create({ kind: 'edge', ownerId: null, name: request.name });
    await new SqlEdgeTokenRepository(tx).setScope(created.record.id, scope);
    return { secret: created.secret, token: { record: created.record, scope } };
  });
}
