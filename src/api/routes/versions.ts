import { Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { badRequest, notFound, tooLarge, UserError } from '../../errors.ts';
import { latestArtifact } from '../../use-cases/artifacts.ts';
import { deleteVersion } from '../../use-cases/delete-version.ts';
import { requireApplication, requireVersion } from '../../use-cases/lookups.ts';
import { rebuildVersion } from '../../use-cases/rebuild.ts';
import type { SpooledArchive, UploadSpool } from '../../archive/spool.ts';
import { uploadVersion, type ReceivedUpload } from '../../use-cases/upload-version.ts';
import { ownerOf } from '../auth.ts';
import { BinaryBody, Build, errorResponses, NotModified, Notes, PageQuery, pageOf, Phase, SemVer, Uuid, Version as VersionSchema, VersionMetadata } from '../schemas.ts';
import { buildJson, versionJson } from '../serialize.ts';
import type { Services } from '../services.ts';

const AppParams = Type.Object({ applicationId: Uuid });
const VersionParams = Type.Object({ versionId: Uuid });
const metadataChecker = TypeCompiler.Compile(VersionMetadata);

/** Reads the multipart body: the `metadata` field and the `source` file (into the spool: memory or a temp file). */
async function receiveUpload(request: FastifyRequest, spool: UploadSpool): Promise<ReceivedUpload> {
  if (!request.isMultipart()) throw new UserError('unsupported_format', 'multipart_required', 'send multipart/form-data with a `metadata` field (JSON) and a `source` file (.tar.gz or .zip)');
  let metadataText: string | undefined;
  let archive: SpooledArchive | undefined;
  for await (const part of request.parts()) {
    if (part.type === 'file') {
      if (part.fieldname !== 'source' || archive) {
        part.file.resume();
        throw badRequest('unexpected_file', `unexpected file part ${JSON.stringify(part.fieldname)}: send exactly one file, named "source"`);
      }
      archive = await spool.receive(part.file);
      if (part.file.truncated) throw tooLarge('source_too_large', 'the source archive is larger than the upload limit');
    } else if (part.fieldname === 'metadata' && metadataText === undefined) {
      // Sent with `Content-Type: application/json`, the field arrives parsed.
      metadataText = typeof part.value === 'string' ? part.value : JSON.stringify(part.value);
    } else {
      throw badRequest('unexpected_field', `unexpected field ${JSON.stringify(part.fieldname)}: only "metadata" (once) and "source" are accepted`);
    }
  }
  if (metadataText === undefined) throw badRequest('missing_metadata', 'the `metadata` field is missing: send JSON like {"version":"1.0.0"}');
  if (!archive) throw badRequest('missing_source', 'the `source` file is missing: attach the .tar.gz or .zip of your project');
  return { metadata: parseMetadata(metadataText), archive };
}

function parseMetadata(text: string): VersionMetadata {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badRequest('invalid_metadata', 'the `metadata` field is not valid JSON');
  }
  if (metadataChecker.Check(value)) return value;
  const first = metadataChecker.Errors(value).First();
  const where = first?.path ? `metadata${first.path.replaceAll('/', '.')}` : 'metadata';
  const hint = first?.path === '/version' ? ' (use a semantic version such as 1.2.3)' : '';
  throw badRequest('invalid_metadata', `${where}: ${first?.message ?? 'is invalid'}${hint}`);
}

export function versionRoutes(services: Services): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>();

    app.post(
      '/v1/applications/:applicationId/versions',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['versions'],
          summary: 'Upload a source archive as a new version; its build starts asynchronously',
          description: 'multipart/form-data: field `metadata` (JSON: version, language, kind, phases, config, notes, optimize) and file `source` (.tar.gz or .zip).',
          params: AppParams,
          consumes: ['multipart/form-data'],
          response: { 202: Type.Object({ version: VersionSchema, build: Build }), 415: errorResponses[400], ...errorResponses },
        },
      },
      async (request, reply) => {
        const created = await uploadVersion(services, {
          ownerId: ownerOf(request),
          applicationId: request.params.applicationId,
          receive: (spool) => receiveUpload(request, spool),
        });
        services.metrics.buildsQueued.inc();
        return reply.status(202).send({ version: versionJson(created.version), build: buildJson(created.build) });
      },
    );

    app.get(
      '/v1/applications/:applicationId/versions',
      { config: { auth: 'owner' }, schema: { tags: ['versions'], summary: 'List versions, newest first', params: AppParams, querystring: PageQuery, response: { 200: pageOf(VersionSchema), ...errorResponses } } },
      async (request) => {
        const ownerId = ownerOf(request);
        await requireApplication(services, ownerId, request.params.applicationId);
        const page = await services.versions.list(ownerId, request.params.applicationId, { limit: request.query.limit ?? 50, cursor: request.query.cursor });
        return { items: page.items.map(versionJson), nextCursor: page.nextCursor };
      },
    );

    app.get(
      '/v1/versions/:versionId',
      { config: { auth: 'owner' }, schema: { tags: ['versions'], summary: 'Read a version', params: VersionParams, response: { 200: VersionSchema, ...errorResponses } } },
      async (request) => versionJson(await requireVersion(services, ownerOf(request), request.params.versionId)),
    );

    app.patch(
      '/v1/versions/:versionId',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['versions'],
          summary: 'Update version, phases, config or notes',
          params: VersionParams,
          body: Type.Object(
            {
              version: Type.Optional(SemVer),
              phases: Type.Optional(Type.Array(Phase, { maxItems: 5, uniqueItems: true })),
              config: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
              notes: Type.Optional(Notes),
            },
            { additionalProperties: false },
          ),
          response: { 200: VersionSchema, ...errorResponses },
        },
      },
      async (request) => {
        if (Object.keys(request.body).length === 0) throw badRequest('nothing_to_update', 'send at least one of version, phases, config, notes');
        const updated = await services.versions.update(ownerOf(request), request.params.versionId, request.body);
        if (!updated) throw notFound('version', request.params.versionId);
        return versionJson(updated);
      },
    );

    app.delete(
      '/v1/versions/:versionId',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['versions'],
          summary: 'Delete a version with its builds and stored objects',
          description: 'A version active in an environment is refused (409 version_deployed) unless `force=true`, which first withdraws it from those environments.',
          params: VersionParams,
          querystring: Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
          response: { 204: Type.Null(), ...errorResponses },
        },
      },
      async (request, reply) => {
        await deleteVersion(services, ownerOf(request), request.params.versionId, request.query.force === true);
        return reply.status(204).send(null);
      },
    );

    app.get(
      '/v1/versions/:versionId/source',
      { config: { auth: 'owner' }, schema: { tags: ['versions'], summary: 'Download the uploaded source archive', params: VersionParams, response: { 200: BinaryBody, ...errorResponses } } },
      async (request, reply) => {
        const version = await requireVersion(services, ownerOf(request), request.params.versionId);
        const { info, body } = await services.objects.get(version.sourceKey);
        const extension = version.sourceFormat === 'zip' ? 'zip' : 'tar.gz';
        return reply
          .header('content-type', version.sourceFormat === 'zip' ? 'application/zip' : 'application/gzip')
          .header('content-length', info.size)
          .header('etag', `"${info.sha256}"`)
          .header('x-kiln-sha256', info.sha256)
          .header('content-disposition', `attachment; filename="source-${version.version}.${extension}"`)
          .send(body);
      },
    );

    app.get(
      '/v1/versions/:versionId/artifact',
      {
        config: { auth: 'owner' },
        schema: {
          tags: ['versions'],
          summary: 'Download the Wasm binary of the latest successful build',
          description: '`variant` is `optimized` (default; the original is served when optimization did not produce one) or `original`.',
          params: VersionParams,
          querystring: Type.Object({ variant: Type.Optional(Type.Union([Type.Literal('optimized'), Type.Literal('original')])) }, { additionalProperties: false }),
          response: { 200: BinaryBody, 304: NotModified, ...errorResponses },
        },
      },
      async (request, reply) => {
        const { build, variant, record } = await latestArtifact(services, ownerOf(request), request.params.versionId, request.query.variant);
        if (request.headers['if-none-match'] === `"${record.sha256}"`) return reply.status(304).send();
        const { body } = await services.objects.get(record.key);
        return reply
          .header('content-type', 'application/wasm')
          .header('content-length', record.size)
          .header('etag', `"${record.sha256}"`)
          .header('digest', `sha-256=${Buffer.from(record.sha256, 'hex').toString('base64')}`)
          .header('x-kiln-sha256', record.sha256)
          .header('x-kiln-variant', variant)
          .header('x-kiln-build', build.id)
          .send(body);
      },
    );

    app.post(
      '/v1/versions/:versionId/builds',
      { config: { auth: 'owner' }, schema: { tags: ['builds'], summary: 'Rebuild a version (a new build of the same source)', params: VersionParams, response: { 202: Build, ...errorResponses } } },
      async (request, reply) => {
        const build = await rebuildVersion(services, ownerOf(request), request.params.versionId);
        services.metrics.buildsQueued.inc();
        return reply.status(202).send(buildJson(build));
      },
    );
  };
}
