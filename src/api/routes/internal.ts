import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { evaluateReport, INSPECT_DEADLINE_MS } from '../../evaluator/evaluate.ts';
import { closeInspectThread, warmInspectThread } from '../../evaluator/inspect-thread.ts';
import { cacheNamespace } from '../../build-cache/namespace.ts';
import { badRequest, notFound } from '../../errors.ts';
import { claimWithWait, type ClaimedJob } from '../../queue/claim.ts';
import { completeJob } from '../../queue/complete.ts';
import { LeaseLostError } from '../../queue/jobs.ts';
import { heartbeat, releaseClaim, requireLease } from '../../queue/lease.ts';
import type { Build } from '../../store/metadata/repositories/builds.ts';
import { artifactKey, attemptsPrefix } from '../../store/objects/keys.ts';
import {
  ArtifactAnswerSchema,
  ArtifactVariantSchema,
  ClaimAnswerSchema,
  ClaimRequestSchema,
  HeartbeatAnswerSchema,
  JobResultSchema,
  type JobSpec,
  type ReportAnswer,
} from '../../worker/protocol.ts';
import { BinaryBody, Build as BuildSchema, errorResponses, Uuid } from '../schemas.ts';
import { buildJson } from '../serialize.ts';
import type { Services } from '../services.ts';

const JobParams = Type.Object({ jobId: Uuid });
const LeaseHeaders = Type.Object({ 'x-kiln-lease': Type.String({ minLength: 1, maxLength: 100 }) });
/** The public build, which the worker reads only `state` of (ReportAnswer). */
const ResultAnswer = Type.Object({ build: BuildSchema, requeued: Type.Boolean() });

function jobPayload(services: Services, claimed: ClaimedJob): JobSpec {
  const { job, build, version } = claimed;
  return {
    id: job.id,
    buildId: build.id,
    versionId: version.id,
    attempt: job.attempt,
    leaseToken: job.leaseToken ?? '',
    leaseExpiresAt: job.leaseExpiresAt?.toISOString() ?? '',
    language: version.language,
    kind: version.kind,
    phases: version.phases,
    config: version.config,
    optimize: version.optimize,
    sourceSha256: version.sourceSha256,
    sourceFormat: version.sourceFormat,
    limits: services.config.buildLimits,
    // The upload was accepted under these; the worker must not refuse it under others.
    archiveLimits: services.config.archiveLimits,
    // Opaque per-owner partition of the workers' dependency cache (a hash, never the owner's id or tokens).
    cacheNamespace: cacheNamespace(build.ownerId),
  };
}

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

    /** The job for a worker, or undefined; a job claimed for a worker that left meanwhile is handed back. */
    const answerClaim = async (workerId: string, waitMs: number, signal: AbortSignal) => {
      const claimed = await claimWithWait(database, workerId, settings, waitMs, signal);
      if (!claimed) return undefined;
      if (signal.aborted) {
        await releaseClaim(database, claimed.job.id, claimed.job.leaseToken ?? '');
        return undefined;
      }
      await services.logs.appendLine(claimed.build.id, `attempt ${claimed.job.attempt} claimed by worker ${workerId}`);
      return jobPayload(services, claimed);
    };

    /** The job and its build, if the request's lease is current. */
    const leased = async (request: { params: { jobId: string }; headers: { 'x-kiln-lease': string } }) => {
      const job = await requireLease(database.db, request.params.jobId, request.headers['x-kiln-lease']);
      const build = await services.builds.getById(job.buildId);
      if (!build) throw new LeaseLostError(job.id);
      return { job, build };
    };

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
        const work = answerClaim(request.body.workerId, request.body.waitMs ?? 0, abort.signal);
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
        const { job, build } = await leased(request);
        const stored = await services.objects.put(artifactKey(build, job.attempt, request.params.variant), request.body, { contentType: 'application/wasm' });
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
        const { job, build } = await leased(request);
        const version = await services.versions.get(build.ownerId, build.versionId);
        if (!version) throw new LeaseLostError(job.id);
        const report = await evaluateReport(services.objects, {
          report: request.body,
          declaredKind: version.kind,
          declaredLanguage: version.language,
          artifactKeys: { original: artifactKey(build, job.attempt, 'original'), optimized: artifactKey(build, job.attempt, 'optimized') },
          inspect: { maxBytes: services.config.maxArtifactBytes, deadlineMs: INSPECT_DEADLINE_MS },
        });
        if (report.outcome !== request.body.outcome) await services.logs.appendLine(build.id, `evaluator: ${report.reason ?? report.outcome}`);
        const completed = await completeJob(database, job.id, request.headers['x-kiln-lease'], report);
        if (completed.requeued) {
          await services.logs.appendLine(build.id, `attempt ${job.attempt} crashed (${report.reason ?? 'platform fault'}); re-queued`);
        } else {
          services.metrics.buildsFinished.inc({ state: completed.build.state });
          await services.logs.finalize(build.id);
          await removeStaleAttempts(services, completed.build);
          if (completed.build.state === 'succeeded') services.buildEvents.succeeded(completed.build);
        }
        services.logs.touch(build.id);
        // `satisfies`: the answer must stay readable as the protocol's ReportAnswer.
        return { build: buildJson(completed.build), requeued: completed.requeued } satisfies ReportAnswer;
      },
    );
  };
}

/** Objects of earlier attempts are never served: delete them once the build ended. */
async function removeStaleAttempts(services: Services, build: Build): Promise<void> {
  const keep = new Set(Object.values(build.artifacts).map((record) => record.key));
  try {
    for await (const object of services.objects.list(attemptsPrefix(build))) {
      if (!keep.has(object.key)) await services.objects.delete(object.key);
    }
  } catch (error) {
    services.logger.warn({ err: error, buildId: build.id }, 'could not remove stale attempt artifacts');
  }
}
