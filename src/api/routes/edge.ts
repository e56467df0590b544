import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { artifactPath, etagMatches, ManifestSchema, serializeManifest, type Manifest } from '../../edge/manifest.ts';
import { badRequest, notFound, UserError } from '../../errors.ts';
import { SqlDeploymentRepository, SqlEdgeTokenRepository, type EdgeScope, type EdgeToken, type ManifestRow } from '../../store/metadata/repositories/deployments.ts';
import { SqlTokenRepository } from '../../store/metadata/repositories/tokens.ts';
import type { TokenAuthenticator } from '../auth.ts';
import { BinaryBody, errorResponses, NotModified, Nullable, Timestamp, Uuid } from '../schemas.ts';
import type { Services } from '../services.ts';
import { EnvironmentName, requireEnvironment } from './deployments.ts';


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

function manifestEntry(row: ManifestRow) {
  const { deployment } = row;
  // Deletion withdraws a version first, so an active deployment always has one.
  if (!deployment.versionId) throw new Error(`active deployment ${deployment.id} has no version`);
  return {
    applicationId: deployment.applicationId,
    application: row.applicationName,
    ownerId: deployment.ownerId,
    owner: row.ownerName,
    deploymentId: deployment.id,
    versionId: deployment.versionId,
    version: deployment.version,
    buildId: deployment.buildId,
    variant: deployment.variant,
    sha256: deployment.sha256,
    size: deployment.size,
    kind: deployment.kind,
    phases: deployment.phases,
    config: deployment.config,
    deployedAt: deployment.createdAt.toISOString(),
    url: artifactPath(deployment.sha256),
  };
}

/**
 * Edge servers' read-only view: edge tokens reach only these two GET routes
 * (every other route wants another token kind), see only the owners their
 * scope names, and only ever artifacts, never sources.
 */
export function edgeRoutes(services: Services, authenticator: TokenAuthenticator): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    const deployments = new SqlDeploymentRepository(services.database.db);
    const edgeTokens = new SqlEdgeTokenRepository(services.database.db);

    const scopeOf = (request: FastifyRequest): Promise<EdgeScope> => {
      const tokenId = request.principal?.tokenId;
      if (!tokenId) throw new UserError('unauthenticated', 'unauthorized', 'an edge token is required');
      return edgeTokens.scopeOf(tokenId);
    };

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
        const ownerIds = request.body.owners;
        const unknown = await edgeTokens.unknownOwners(ownerIds ?? []);
        if (unknown.length > 0) throw badRequest('unknown_owner', `no owner has the id ${unknown.join(', ')}`);
        const scope: EdgeScope = ownerIds ? { allOwners: false, ownerIds } : { allOwners: true, ownerIds: [] };
        const created = await services.database.db.transaction(async (tx) => {
          const token = await new SqlTokenRepository(tx).create({ kind: 'edge', ownerId: null, name: request.body.name });
          await new SqlEdgeTokenRepository(tx).setScope(token.record.id, scope);
          return token;
        });
        return reply.status(201).send({ token: created.secret, info: edgeTokenInfo({ record: created.record, scope }) });
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
        const { environment } = request.query;
        requireEnvironment(services.config.environments, environment);
        const rows = await deployments.manifest(environment, await scopeOf(request));
        const manifest: Manifest = { environment, applications: rows.map(manifestEntry) };
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
        const deployment = await deployments.findVisibleArtifact(sha256, await scopeOf(request));
        // Not active, or another owner's: the same 404, so a token cannot probe hashes.
        if (!deployment) throw notFound('active artifact', sha256);
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
