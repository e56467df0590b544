import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { notFound } from '../../errors.ts';
import type { TokenRecord } from '../../store/metadata/repositories/tokens.ts';
import { createOwner } from '../../use-cases/create-owner.ts';
import { ownerOf, type TokenAuthenticator } from '../auth.ts';
import { errorResponses, Timestamp, Uuid } from '../schemas.ts';
import type { Services } from '../services.ts';

const OwnerName = Type.String({ minLength: 1, maxLength: 100, pattern: '^[a-z0-9][a-z0-9._-]*$' });
const TokenName = Type.String({ minLength: 1, maxLength: 100 });
const TokenInfo = Type.Object({ id: Uuid, name: Type.String(), createdAt: Timestamp, revokedAt: Type.Union([Timestamp, Type.Null()]) });

const tokenInfo = (record: TokenRecord) => ({
  id: record.id,
  name: record.name,
  createdAt: record.createdAt.toISOString(),
  revokedAt: record.revokedAt ? record.revokedAt.toISOString() : null,
});

export function ownerRoutes(services: Services, authenticator: TokenAuthenticator): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

    app.post(
      '/v1/owners',
      {
        config: { auth: 'admin' },
        schema: {
          tags: ['tenancy'],
          summary: 'Create an owner and its first token (admin token only)',
          body: Type.Object({ name: OwnerName }, { additionalProperties: false }),
          response: { 201: Type.Object({ owner: Type.Object({ id: Uuid, name: Type.String(), createdAt: Timestamp }), token: Type.String() }), ...errorResponses },
        },
      },
      async (request, reply) => {
        const { owner, secret } = await createOwner(services, request.body.name);
        return reply.status(201).send({ owner: { id: owner.id, name: owner.name, createdAt: owner.createdAt.toISOString() }, token: secret });
      },
    );

    app.post(
      '/v1/tokens',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['tenancy'],
          summary: "Create another token for the caller's owner (shown once)",
          body: Type.Object({ name: TokenName }, { additionalProperties: false }),
          response: { 201: Type.Object({ token: Type.String(), info: TokenInfo }), ...errorResponses },
        },
      },
      async (request, reply) => {
        const { record, secret } = await services.tokens.create({ kind: 'owner', ownerId: ownerOf(request), name: request.body.name });
        return reply.status(201).send({ token: secret, info: tokenInfo(record) });
      },
    );

    app.get(
      '/v1/tokens',
      { config: { auth: 'owner' }, schema: { tags: ['tenancy'], summary: "List the owner's tokens (never their values)", response: { 200: Type.Object({ items: Type.Array(TokenInfo) }) } } },
      async (request) => ({ items: (await services.tokens.listForOwner(ownerOf(request))).map(tokenInfo) }),
    );

    app.delete(
      '/v1/tokens/:tokenId',
      {
        config: { auth: 'owner' },
        schema: { tags: ['tenancy'], summary: 'Revoke a token', params: Type.Object({ tokenId: Uuid }), response: { 204: Type.Null(), ...errorResponses } },
      },
      async (request, reply) => {
        const revoked = await services.tokens.revoke(ownerOf(request), request.params.tokenId);
        if (!revoked) throw notFound('token', request.params.tokenId);
        authenticator.forget(request.params.tokenId);
        return reply.status(204).send(null);
      },
    );
  };
}
