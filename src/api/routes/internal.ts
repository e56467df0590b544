import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { INSPECT_DEADLINE_MS } from '../../evaluator/evaluate.ts';
import { closeInspectThread, warmInspectThread } from '../../evaluator/inspect-thread.ts';
import { badRequest, notFound } from '../../errors.ts';
import { heartbeat, requireLease, requireLeasedBuild } from '../../queue/lease.ts';
import { artifactKey } from '../../store/objects/keys.ts';
import { claimJob, reportResult } from '../../use-cases/worker-jobs.ts';
import {
  ArtifactAnswerSchema,
  ArtifactVariantSchema,
  ClaimAnswerSchema,
  ClaimRequestSchema,
  HeartbeatAnswerSchema,
  JobResultSchema,
  type ReportAnswer,
} from '../../worker/protocol.ts';
import { BinaryBody, Build as BuildSchema, errorResponses, Uuid } from '../schemas.ts';
import { buildJson } from '../serialize.ts';
import type { Services } from '../services.ts';

const JobParams = Type.Object({ jobId: Uuid });
const LeaseHeaders = Type.Object({ 'x-kiln-lease': Type.String({ minLength: 1, maxLength: 100 }) });
/** The public build, which the worker reads only `state` of (ReportAnswer). */
const ResultAnswer = Type.Object({ build: BuildSchema, requeued: Type.Boolean() });

export function internalRoutes(services: Services): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();
    const { database } = services;
    const settings = services.config.queue;

    // Long polls must end, and be over, before the server closes the
    // database under them: preClose wakes them, onClose waits for them.
    const shuttingDown = new AbortController();
    const longPolls = new Set<Promise<unknown>>();
    app.addHook('preClose', async () => shuttingDown.abort());
    // Its start-up (a module loader in a fresh isolate) is paid now, not inside a worker's lease.
    warmInspectThread();
    app.addHook('onClose', closeInspectThread);
    app.addHook('onClose', async () => {
      await Promise.allSettled([...longPolls]);
    });

    /** The job and its build, if the request's lease is current. */
    type LeasedRequest = { params: { jobId: string }; headers: { 'x-kiln-lease': string } };
    const leased = (request: LeasedRequest) => requireLease(database.db, request.params.jobId, request.headers['x-kiln-lease']);
    const leasedWhole = (request: LeasedRequest) => requireLeasedBuild(database.db, request.params.jobId, request.headers['x-kiln-lease']);

    app.post(
      '/internal/v1/jobs/claim',
      {
        config: { auth: 'worker' },
        schema: {
          body: ClaimRequestSchema,
          response: { 200: ClaimAnswerSchema, 204: Type.Null(), ...errorResponses },
        },
      },
      async (request, reply) => {
        const abort = new AbortController();
        // The response socket closing before we answered means the worker
        // left (stopped, killed, timed out); `request.raw` 'close' fires as
        // soon as the body is read, so it cannot tell.
        reply.raw.on('close', () => {
          if (!reply.raw.writableFinished) abort.abort();
        });
        const onShutdown = () => abort.abort();
        shuttingDown.signal.addEventListener('abort', onShutdown);
        const work = claimJob(services, request.body.workerId, request.body.waitMs ?? 0, abort.signal);
        longPolls.add(work);
        try {
          const job = await work;
          return job ? reply.status(200).send({ job }) : reply.status(204).send(null);
        } finally {
          longPolls.delete(work);
          shuttingDown.signal.removeEventListener('abort', onShutdown);
        }
      },
    );

    app.post(
      '/internal/v1/jobs/:jobId/heartbeat',
      { config: { auth: 'worker' }, schema: { params: JobParams, headers: LeaseHeaders, response: { 200: HeartbeatAnswerSchema, ...errorResponses } } },
      async (request) => {
        const answer = await heartbeat(database, request.params.jobId, request.headers['x-kiln-lease'], settings);
        return { leaseExpiresAt: answer.leaseExpiresAt.toISOString(), cancelRequested: answer.cancelRequested };
      },
    );

    app.get(
      '/internal/v1/jobs/:jobId/source',
      { config: { auth: 'worker' }, schema: { params: JobParams, headers: LeaseHeaders, response: { 200: BinaryBody, ...errorResponses } } },
      async (request, reply) => {
        const { build } = await leased(request);
        const version = await services.versions.get(build.ownerId, build.versionId);
        if (!version) throw notFound('version', build.versionId);
        const { info, body } = await services.objects.get(version.sourceKey);
        return reply.header('content-type', 'application/octet-stream').header('content-length', info.size).header('x-kiln-sha256', info.sha256).send(body);
      },
    );

    app.post(
      '/internal/v1/jobs/:jobId/logs',
      { config: { auth: 'worker' }, schema: { params: JobParams, headers: LeaseHeaders, response: { 204: Type.Null(), ...errorResponses } } },
      async (request, reply) => {
        if (!Buffer.isBuffer(request.body)) throw badRequest('invalid_log', 'send the log bytes as application/octet-stream');
        const { build } = await leased(request);
        await services.logs.append(build.id, request.body);
        return reply.status(204).send(null);
      },
    );

    app.put(
      '/internal/v1/jobs/:jobId/artifacts/:variant',
      {
        config: { auth: 'worker' },
        bodyLimit: services.config.maxArtifactBytes,
        schema: {
          params: Type.Object({ jobId: Uuid, variant: ArtifactVariantSchema }),
          headers: LeaseHeaders,
          response: { 200: ArtifactAnswerSchema, ...errorResponses },
        },
      },
      async (request) => {
        if (!Buffer.isBuffer(request.body) || request.body.length === 0) throw badRequest('invalid_artifact', 'send the Wasm bytes as application/wasm');
        const { attempt, build } = await leased(request);
        const key = artifactKey(build, attempt, request.params.variant);
        const stored = await services.objects.put(key, request.body, { contentType: 'application/wasm' });
        // Judged when the report arrives; validated now, while the worker uploads the rest (decision 0047).
        services.inspections.start(key, stored.sha256, request.body, { maxBytes: services.config.maxArtifactBytes, deadlineMs: INSPECT_DEADLINE_MS });
        return { sha256: stored.sha256, size: stored.size };
      },
    );

    app.post(
      '/internal/v1/jobs/:jobId/result',
      {
        config: { auth: 'worker' },
        schema: {
          params: JobParams,
          headers: LeaseHeaders,
          body: JobResultSchema,
          response: { 200: ResultAnswer, ...errorResponses },
        },
      },
      async (request) => {
        const { job, build } = await leasedWhole(request);
        const buildEnded = (ended: typeof build) => {
          services.metrics.buildsFinished.inc({ state: ended.state });
          if (ended.state === 'succeeded') services.buildEvents.succeeded(ended);
        };
        const completed = await reportResult({ ...services, buildEnded, buildSucceeding: (candidate) => services.buildEvents.succeeding(candidate) }, job, build, request.headers['x-kiln-lease'], request.body);
        // `satisfies`: the answer must stay readable as the protocol's ReportAnswer.
        return { build: buildJson(completed.build), requeued: completed.requeued } satisfies ReportAnswer;
      },
    );
  };
}
