import { SqlDeploymentRepository, type Deployment } from '../store/metadata/repositories/deployments.ts';
import type { UseCaseContext } from './context.ts';
import { requireApplication } from './lookups.ts';

export interface HistoryRequest {
  ownerId: string;
  applicationId: string;
  environment?: string;
  limit: number;
  cursor?: string;
}

export interface DeploymentHistory {
  items: Deployment[];
  nextCursor?: string;
  /** What each environment runs now. */
  active: Deployment[];
}

/** An application's deployments, newest first, with the active one of every environment. */
export async function deploymentHistory(context: Pick<UseCaseContext, 'database' | 'applications'>, request: HistoryRequest): Promise<DeploymentHistory> {
  await requireApplication(context, request.ownerId, request.applicationId);
  const deployments = new SqlDeploymentRepository(context.database.db);
  const page = await deployments.history(request.ownerId, request.applicationId, { environment: request.environment }, { limit: request.limit, cursor: request.cursor });
  const active = await deployments.activeForApplication(request.ownerId, request.applicationId);
  return { items: page.items, nextCursor: page.nextCursor, active };
}
