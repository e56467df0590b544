import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { notFound } from '../../errors.ts';
import { cancelBuild } from '../../use-cases/cancel-build.ts';
import { ownerOf } from '../auth.ts';
import { FollowStreams, streamLog } from '../follow-log.ts';
import { BinaryBody, Build, BuildStateSchema, errorResponses, PageQuery, pageOf, Uuid } from '../schemas.ts';
import { buildJson } from '../serialize.ts';
import type { Services } from '../services.ts';

const BuildParams = Type.Object({ buildId: Uuid });

/** Sends JSON text the route's serializer already wrote: fastify sends a string with a JSON type as it is. */
function sendSerialized(reply: FastifyReply, body: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(body);
}

export function buildRoutes(services: Services): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    const followStreams = new FollowStreams(services.config.followStreamsPerOwner);
    // Follow streams never end by themselves: a closing server ends them
    // (preClose, before it waits for its connections), and the CLI resumes.
    const closing = new AbortController();
    app.addHook('preClose', async () => closing.abort());

    app.get(
      '/v1/builds',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['builds'],
          summary: 'List builds, newest first',
          querystring: Type.Object(
            { ...PageQuery.properties, applicationId: Type.Optional(Uuid), versionId: Type.Optional(Uuid), state: Type.Optional(BuildStateSchema) },
            { additionalProperties: false },
          ),
          response: { 200: pageOf(Build), ...errorResponses },
        },
      },
      async (request) => {
        const { limit, cursor, applicationId, versionId, state } = request.query;
        const page = await services.builds.list(ownerOf(request), { applicationId, versionId, state }, { limit: limit ?? 50, cursor });
        return { items: page.items.map(buildJson), nextCursor: page.nextCursor };
      },
    );

    app.get(
      '/v1/builds/:buildId',
      { config: { auth: 'owner' }, schema: { tags: ['builds'], summary: 'Read a build: state, stages, timings, sizes, reason', params: BuildParams, response: { 200: Build, ...errorResponses } } },
      async (request, reply) => {
        const ownerId = ownerOf(request);
        // An ended build's answer, serialized once by this route's serializer,
        // is sent again as is: the hottest read (clients poll it), and the
        // same bytes either way.
        const cached = services.finishedBuilds.get(ownerId, request.params.buildId);
        if (cached) return sendSerialized(reply, cached);
        const build = await services.builds.get(ownerId, request.params.buildId);
        if (!build) throw notFound('build', request.params.buildId);
        const body = reply.serialize(buildJson(build));
        if (typeof body !== 'string') throw new Error('the build serializer returned bytes, not JSON text');
        services.finishedBuilds.remember(build, body);
        return sendSerialized(reply, body);
      },
    );

    app.get(
      '/v1/builds/:buildId/logs',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['builds'],
          summary: 'The build log as text; with follow=1, server-sent events until the build ends',
          description: 'SSE events: `log` (data: the next piece of the log, one data line per log line), `state` (data: JSON build), `end` (data: JSON build, then the stream closes).',
          params: BuildParams,
          querystring: Type.Object({ follow: Type.Optional(Type.Union([Type.Literal('1'), Type.Literal('0'), Type.Literal('true'), Type.Literal('false')])) }, { additionalProperties: false }),
          response: { 200: BinaryBody, ...errorResponses },
        },
      },
      async (request, reply) => {
        const ownerId = ownerOf(request);
        const build = await services.builds.get(ownerId, request.params.buildId);
        if (!build) throw notFound('build', request.params.buildId);
        const follow = request.query.follow === '1' || request.query.follow === 'true';
        if (!follow) return reply.type('text/plain; charset=utf-8').send(await services.logs.read(build));
        const release = followStreams.acquire(ownerId);
        try {
          await streamLog(services, build, reply, closing.signal);
        } finally {
          release();
        }
        return reply;
      },
    );

    app.post(
      '/v1/builds/:buildId/cancel',
      {
        config: { auth: 'owner' },
        schema: { tags: ['builds'], summary: 'Cancel a queued or running build', params: BuildParams, response: { 202: Build, ...errorResponses } },
      },
      async (request, reply) => {
        const build = await cancelBuild(services, ownerOf(request), request.params.buildId);
        return reply.status(202).send(buildJson(build));
      },
    );
  };
}
