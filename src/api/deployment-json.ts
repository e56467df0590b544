import { Type, type Static } from '@sinclair/typebox';
import { ENVIRONMENT_PATTERN } from '../edge/environments.ts';
import type { Deployment } from '../store/metadata/repositories/deployments.ts';
import { Nullable, Timestamp, Uuid } from './schemas.ts';

/**
 * Deployments as the API shows them: the schemas (shared by the deployment
 * and edge routes, and the CLI's types) and the one function that renders a row.
 */
export const EnvironmentName = Type.String({
  pattern: ENVIRONMENT_PATTERN,
  description: 'staging, production, or a name the operator added with KILN_ENVIRONMENTS',
});

export const DeploymentSchema = Type.Object({
  id: Uuid,
  applicationId: Uuid,
  environment: Type.String(),
  number: Type.Integer({ description: 'increases with every deployment of the application' }),
  versionId: Nullable(Uuid),
  version: Type.String({ description: 'the semantic version, kept after the version is deleted' }),
  buildId: Uuid,
  variant: Type.String(),
  artifact: Type.Object({ sha256: Type.String(), size: Type.Integer() }),
  kind: Nullable(Type.String()),
  phases: Type.Array(Type.String()),
  config: Type.String(),
  active: Type.Boolean({ description: 'whether this is what its environment runs now' }),
  withdrawnAt: Nullable(Timestamp),
  createdAt: Timestamp,
});
export type DeploymentJson = Static<typeof DeploymentSchema>;

export const PromoteResult = Type.Object({
  deployment: DeploymentSchema,
  previous: Nullable(DeploymentSchema),
  changed: Type.Boolean({ description: 'false when exactly this artifact and configuration was already active (nothing recorded)' }),
});
export type PromoteResultJson = Static<typeof PromoteResult>;

export const DeploymentHistory = Type.Object({
  items: Type.Array(DeploymentSchema),
  nextCursor: Type.Optional(Type.String()),
  active: Type.Record(Type.String(), DeploymentSchema, { description: 'environment → its active deployment' }),
});
export type DeploymentHistoryJson = Static<typeof DeploymentHistory>;

export function deploymentJson(deployment: Deployment, active: boolean): DeploymentJson {
  return {
    id: deployment.id,
    applicationId: deployment.applicationId,
    environment: deployment.environment,
    number: deployment.number,
    versionId: deployment.versionId,
    version: deployment.version,
    buildId: deployment.buildId,
    variant: deployment.variant,
    artifact: { sha256: deployment.sha256, size: deployment.size },
    kind: deployment.kind,
    phases: deployment.phases,
    config: deployment.config,
    active,
    withdrawnAt: deployment.withdrawnAt ? deployment.withdrawnAt.toISOString() : null,
    createdAt: deployment.createdAt.toISOString(),
  };
}
