import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { badRequest, notFound } from '../../errors.ts';
import { deleteApplication } from '../../use-cases/delete-application.ts';
import { requireApplication } from '../../use-cases/lookups.ts';
import { ownerOf } from '../auth.ts';
import { Application, ApplicationName, errorResponses, Notes, PageQuery, pageOf, Uuid } from '../schemas.ts';
import { applicationJson } from '../serialize.ts';
import type { Services } from '../services.ts';

const AppParams = Type.Object({ applicationId: Uuid });

export function applicationRoutes(services: Services): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

    app.post(
      '/v1/applications',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['applications'],
          summary: 'Create an application',
          body: Type.Object({ name: ApplicationName, notes: Type.Optional(Notes) }, { additionalProperties: false }),
          response: { 201: Application, ...errorResponses },
        },
      },
      async (request, reply) => {
        const created = await services.applications.create(ownerOf(request), { name: request.body.name, notes: request.body.notes ?? '' });
        return reply.status(201).send(applicationJson(created));
      },
    );

    app.get(
      '/v1/applications',
      { config: { auth: 'owner' }, schema: { tags: ['applications'], summary: 'List applications, newest first', querystring: PageQuery, response: { 200: pageOf(Application), ...errorResponses } } },
      async (request) => {
        const page = await services.applications.list(ownerOf(request), { limit: request.query.limit ?? 50, cursor: request.query.cursor });
        return { items: page.items.map(applicationJson), nextCursor: page.nextCursor };
      },
    );

    app.get(
      '/v1/applications/:applicationId',
      { config: { auth: 'owner' }, schema: { tags: ['applications'], summary: 'Read an application', params: AppParams, response: { 200: Application, ...errorResponses } } },
      async (request) => {
        return applicationJson(await requireApplication(services, ownerOf(request), request.params.applicationId));
      },
    );

    app.patch(
      '/v1/applications/:applicationId',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['applications'],
          summary: 'Update the name or notes',
          params: AppParams,
          body: Type.Object({ name: Type.Optional(ApplicationName), notes: Type.Optional(Notes) }, { additionalProperties: false }),
          response: { 200: Application, ...errorResponses },
        },
      },
      async (request) => {
        if (request.body.name === undefined && request.body.notes === undefined) throw badRequest('nothing_to_update', 'send at least one of name, notes');
        const updated = await services.applications.update(ownerOf(request), request.params.applicationId, request.body);
        if (!updated) throw notFound('application', request.params.applicationId);
        return applicationJson(updated);
      },
    );

    app.delete(
      '/v1/applications/:applicationId',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['applications'],
          summary: 'Delete an application with all its versions, builds and stored objects',
          description: 'Refused (409) while one of its versions is active in an environment, unless `force=true`.',
          params: AppParams,
          querystring: Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
          response: { 204: Type.Null(), ...errorResponses },
        },
      },
      async (request, reply) => {
        await deleteApplication(services, ownerOf(request), request.params.applicationId, request.query.force === true);
        return reply.status(204).send(null);
      },
    );
  };
}
