import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { deploymentHistory } from '../../use-cases/deployment-history.ts';
import { promote } from '../../use-cases/promote.ts';
import { ownerOf } from '../auth.ts';
import { DeploymentHistory, deploymentJson, EnvironmentName, PromoteResult } from '../deployment-json.ts';
import { errorResponses, Uuid } from '../schemas.ts';
import type { Services } from '../services.ts';

const AppParams = Type.Object({ applicationId: Uuid });
const Variant = Type.Union([Type.Literal('optimized'), Type.Literal('original')]);

export function deploymentRoutes(services: Services): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

    app.post(
      '/v1/applications/:applicationId/deployments',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['deployments'],
          summary: 'Promote a succeeded version to an environment (a rollback is the promotion of an earlier version)',
          description:
            'Records the exact artifact (build, variant, sha256) and the version’s kind, phases and config as they are now. `buildId` pins a specific succeeded build (default: the latest); `variant` defaults to optimized when there is one. Promoting what is already active answers 200 with `changed: false`.',
          params: AppParams,
          body: Type.Object(
            { versionId: Uuid, environment: EnvironmentName, buildId: Type.Optional(Uuid), variant: Type.Optional(Variant) },
            { additionalProperties: false },
          ),
          response: { 200: PromoteResult, 201: PromoteResult, ...errorResponses },
        },
      },
      async (request, reply) => {
        const result = await promote(services, { ownerId: ownerOf(request), applicationId: request.params.applicationId, ...request.body });
        request.log.info({ deploymentId: result.deployment.id, environment: result.deployment.environment, changed: result.changed }, 'promoted');
        return reply.status(result.changed ? 201 : 200).send({
          deployment: deploymentJson(result.deployment, true),
          previous: result.previous ? deploymentJson(result.previous, false) : null,
          changed: result.changed,
        });
      },
    );

    app.get(
      '/v1/applications/:applicationId/deployments',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['deployments'],
          summary: 'Deployment history, newest first, with the active deployment of every environment',
          params: AppParams,
          querystring: Type.Object(
            {
              environment: Type.Optional(EnvironmentName),
              limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
              cursor: Type.Optional(Type.String({ maxLength: 200 })),
            },
            { additionalProperties: false },
          ),
          response: { 200: DeploymentHistory, ...errorResponses },
        },
      },
      async (request) => {
        const { environment, limit, cursor } = request.query;
        const history = await deploymentHistory(services, { ownerId: ownerOf(request), applicationId: request.params.applicationId, environment, limit: limit ?? 50, cursor });
        const liveIds = new Set(history.active.map((deployment) => deployment.id));
        return {
          items: history.items.map((deployment) => deploymentJson(deployment, liveIds.has(deployment.id))),
          nextCursor: history.nextCursor,
          active: Object.fromEntries(history.active.map((deployment) => [deployment.environment, deploymentJson(deployment, true)])),
        };
      },
    );
  };
}
