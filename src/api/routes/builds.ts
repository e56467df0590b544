import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { notFound } from '../../errors.ts';
import { cancelBuild } from '../../queue/cancel.ts';
import type { Build as BuildRow } from '../../store/metadata/repositories/builds.ts';
import { TERMINAL_BUILD_STATES } from '../../store/metadata/schema.ts';
import { ownerOf } from '../auth.ts';
import { BinaryBody, Build, BuildStateSchema, errorResponses, PageQuery, pageOf, Uuid } from '../schemas.ts';
import { buildJson } from '../serialize.ts';
import type { Services } from '../services.ts';

const BuildParams = Type.Object({ buildId: Uuid });
const isTerminal = (build: BuildRow) => TERMINAL_BUILD_STATES.includes(build.state);

export function buildRoutes(services: Services): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

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
      async (request) => {
        const ownerId = ownerOf(request);
        const build = services.finishedBuilds.get(ownerId, request.params.buildId) ?? (await services.builds.get(ownerId, request.params.buildId));
        if (!build) throw notFound('build', request.params.buildId);
        services.finishedBuilds.remember(build);
        return buildJson(build);
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
        const build = await services.builds.get(ownerOf(request), request.params.buildId);
        if (!build) throw notFound('build', request.params.buildId);
        const follow = request.query.follow === '1' || request.query.follow === 'true';
        if (!follow) return reply.type('text/plain; charset=utf-8').send(await services.logs.read(build));
        await streamLog(services, build, reply);
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
        const build = await cancelBuild(services.database, ownerOf(request), request.params.buildId);
        if (build.state === 'cancelled') await services.logs.finalize(build.id);
        services.logs.touch(build.id);
        return reply.status(202).send(buildJson(build));
      },
    );
  };
}

function sseEvent(event: string, data: string): string {
  return `event: ${event}\n${data
    .split('\n')
    .map((line) => `data: ${line}`)
    .join('\n')}\n\n`;
}

/**
 * Follows a build's log: sends what exists, then new chunks as they arrive
 * (woken in-process by appends, and by a periodic re-check for appends made
 * through another API instance), and ends with an `end` event.
 */
async function streamLog(services: Services, initial: BuildRow, reply: FastifyReply): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  let closed = false;
  raw.on('close', () => {
    closed = true;
  });
  let sentBytes = 0;
  let lastSeq = 0;
  let lastState = initial.state;
  let wake: (() => void) | undefined;
  const unsubscribe = services.logs.subscribe(initial.id, () => wake?.());
  const keepAlive = setInterval(() => raw.write(': keep-alive\n\n'), 15_000);
  try {
    while (!closed) {
      const build = await services.builds.getById(initial.id);
      if (!build) break;
      if (build.logKey) {
        const all = await services.logs.read(build);
        if (all.length > sentBytes) raw.write(sseEvent('log', all.subarray(sentBytes).toString('utf8')));
        sentBytes = all.length;
      } else {
        for (const chunk of await services.logs.chunksAfter(build.id, lastSeq)) {
          raw.write(sseEvent('log', chunk.data.toString('utf8')));
          sentBytes += chunk.data.length;
          lastSeq = chunk.seq;
        }
      }
      if (build.state !== lastState) {
        lastState = build.state;
        raw.write(sseEvent('state', JSON.stringify(buildJson(build))));
      }
      if (isTerminal(build) && (build.logKey || build.logBytes <= sentBytes)) {
        raw.write(sseEvent('end', JSON.stringify(buildJson(build))));
        break;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 500);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    clearInterval(keepAlive);
    unsubscribe();
    raw.end();
  }
}
