import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { etagMatches, ManifestSchema, serializeManifest } from '../../edge/manifest.ts';
import { notFound, UserError } from '../../errors.ts';
import { SqlEdgeTokenRepository, type EdgeToken } from '../../store/metadata/repositories/deployments.ts';
import { findEdgeArtifact, readEdgeManifest } from '../../use-cases/edge-reads.ts';
import { issueEdgeToken } from '../../use-cases/issue-edge-token.ts';
import type { TokenAuthenticator } from '../auth.ts';
import { EnvironmentName } from '../deployment-json.ts';
import { BinaryBody, errorResponses, NotModified, Nullable, Timestamp, Uuid } from '../schemas.ts';
import type { Services } from '../services.ts';

const EdgeTokenInfo = Type.Object({
  id: Uuid,
  name: Type.String(),
  allOwners: Type.Boolean(),
  owners: Type.Array(Uuid, { description: 'the owners it may read when allOwners is false' }),
  createdAt: Timestamp,
  revokedAt: Nullable(Timestamp),
});

const edgeTokenInfo = ({ record, scope }: EdgeToken) => ({
  id: record.id,
  name: record.name,
  allOwners: scope.allOwners,
  owners: scope.ownerIds,
  createdAt: record.createdAt.toISOString(),
  revokedAt: record.revokedAt ? record.revokedAt.toISOString() : null,
});

/**
 * Edge servers' read-only view: edge tokens reach only these two GET routes
 * (every other route wants another token kind), see only the owners their
 * scope names, and only ever artifacts, never sources.
 */
export function edgeRoutes(services: Services, authenticator: TokenAuthenticator): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    const edgeTokens = new SqlEdgeTokenRepository(services.database.db);

    app.post(
      '/v1/edge-tokens',
      {
        config: { auth: 'admin' },
        schema: {
          tags: ['edge'],
          summary: 'Create an edge token (admin token only; the value is shown once)',
          description: 'Without `owners` the token reads every owner’s deployments; with it, only those owners’.',
          body: Type.Object(
            { name: Type.String({ minLength: 1, maxLength: 100 }), owners: Type.Optional(Type.Array(Uuid, { minItems: 1, maxItems: 1000, uniqueItems: true })) },
            { additionalProperties: false },
          ),
          response: { 201: Type.Object({ token: Type.String(), info: EdgeTokenInfo }), ...errorResponses },
        },
      },
      async (request, reply) => {
        const { secret, token } = await issueEdgeToken(services, { name: request.body.name, ownerIds: request.body.owners });
        return reply.status(201).send({ token: secret, info: edgeTokenInfo(token) });
      },
    );

    app.get(
      '/v1/edge-tokens',
      { config: { auth: 'admin' }, schema: { tags: ['edge'], summary: 'List edge tokens and their scopes (never their values)', response: { 200: Type.Object({ items: Type.Array(EdgeTokenInfo) }), ...errorResponses } } },
      async () => ({ items: (await edgeTokens.list()).map(edgeTokenInfo) }),
    );

    app.delete(
      '/v1/edge-tokens/:tokenId',
      { config: { auth: 'admin' }, schema: { tags: ['edge'], summary: 'Revoke an edge token', params: Type.Object({ tokenId: Uuid }), response: { 204: Type.Null(), ...errorResponses } } },
      async (request, reply) => {
        if (!(await edgeTokens.revoke(request.params.tokenId))) throw notFound('edge token', request.params.tokenId);
        authenticator.forget(request.params.tokenId);
        return reply.status(204).send(null);
      },
    );

    app.get(
      '/v1/edge/manifest',
      {
        config: { auth: 'edge' },
        schema: {
          tags: ['edge'],
          summary: 'The active artifact of every application in an environment (edge token only)',
          description: 'The ETag is the sha256 of the body; send it back in If-None-Match to get 304 while nothing changed. Download URLs are relative to the API URL.',
          querystring: Type.Object({ environment: EnvironmentName }, { additionalProperties: false }),
          response: { 200: ManifestSchema, 304: NotModified, ...errorResponses },
        },
      },
      async (request, reply) => {
        const manifest = await readEdgeManifest(services, edgeTokenOf(request), request.query.environment);
        const { body, etag } = serializeManifest(manifest);
        void reply.header('etag', etag).header('cache-control', 'no-cache');
        if (etagMatches(request.headers['if-none-match'], etag)) return reply.status(304).send();
        // The bytes sent are exactly the bytes hashed: no second serialization.
        return reply.type('application/json; charset=utf-8').serializer(() => body).send(manifest);
      },
    );

    app.get(
      '/v1/edge/artifacts/:sha256',
      {
        config: { auth: 'edge' },
        schema: {
          tags: ['edge'],
          summary: 'Download an artifact listed in a manifest this token may read',
          params: Type.Object({ sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
          response: { 200: BinaryBody, 304: NotModified, ...errorResponses },
        },
      },
      async (request, reply) => {
        const { sha256 } = request.params;
        const deployment = await findEdgeArtifact(services, edgeTokenOf(request), sha256);
        const etag = `"${sha256}"`;
        if (etagMatches(request.headers['if-none-match'], etag)) return reply.status(304).send();
        const { body } = await services.objects.get(deployment.artifactKey);
        return reply
          .header('content-type', 'application/wasm')
          .header('content-length', deployment.size)
          .header('etag', etag)
          .header('cache-control', 'private, max-age=31536000, immutable')
          .header('digest', `sha-256=${Buffer.from(sha256, 'hex').toString('base64')}`)
          .header('x-kiln-sha256', sha256)
          .send(body);
      },
    );
  };
}

function edgeTokenOf(request: FastifyRequest): string {
  const tokenId = request.principal?.tokenId;
  if (!tokenId) throw new UserError('unauthenticated', 'unauthorized', 'an edge token is required');
  return tokenId;
}
