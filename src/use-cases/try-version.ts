/**
 * Trying a version on the test bed, free of HTTP: which build a version runs
 * as (cached briefly, so a hot version costs no database round trip per
 * call), what an invoke may ask for per kind, and getting a module ready on
 * the runners when its build succeeds. The routes in src/api/routes/testbed.ts
 * parse the request, call one method here and render the result.
 *
 * Tenant modules, http-components included, run only in runner processes
 * (decisions 0012, 0017); RunnerTestbed applies the owner's fair-share limits.
 */
import { badRequest, conflict, notFound, unprocessable } from '../errors.ts';
import type { Build } from '../store/metadata/repositories/builds.ts';
import type { Version } from '../store/metadata/repositories/versions.ts';
import type { ArtifactRecord } from '../worker/protocol.ts';
import type { InvokeBody } from '../testbed/api-schemas.ts';
import { componentResultJson, type ComponentResult } from '../testbed/component/index.ts';
import type { TestbedConfig } from '../testbed/config.ts';
import type { ConnectionInfo, HttpRequestData } from '../testbed/http-message.ts';
import { bodyBytes, requestData, responseData } from '../testbed/inputs.ts';
import { Lru } from '../testbed/lru.ts';
import type { ArtifactRef } from '../testbed/modules.ts';
import { LOG_LEVELS } from '../testbed/proxy-wasm/abi.ts';
import { filterResultJson, functionResultJson } from '../testbed/render.ts';
import type { RunnerTestbed } from '../testbed/runner/client.ts';
import type { FilterResult, PluginSettings } from '../testbed/testbed.ts';
import { ECHO_UPSTREAM } from '../testbed/upstream.ts';
import type { AppKind } from '../wasm/kind.ts';
import type { UseCaseContext } from './context.ts';
import type { SucceedingBuild } from './worker-jobs.ts';

type Lookups = Pick<UseCaseContext, 'versions' | 'builds' | 'applications' | 'objects'>;
type Variant = 'optimized' | 'original';

/** What a version runs as on the test bed, looked up from its latest successful build. */
export interface Target {
  version: Version;
  kind: AppKind;
  artifact: ArtifactRef;
  plugin: PluginSettings;
  /** From the version's config, parsed once per look-up rather than per request. */
  preview: { upstream: string | undefined; freshInstance: boolean };
}

/** Who called, as a filter sees the connection (`invoke` has no real downstream: the API's own socket). */
export interface CallerConnection {
  host: string;
  sourceAddress: string;
  sourcePort: number;
  destinationAddress: string;
  destinationPort: number;
}

export type InvokeResult =
  | { kind: 'wasi-command'; json: ReturnType<typeof functionResultJson> }
  | { kind: 'proxy-wasm'; json: ReturnType<typeof filterResultJson> }
  | { kind: 'http-component'; json: ReturnType<typeof componentResultJson> };

export type PreviewResult = { kind: 'http-component'; result: ComponentResult } | { kind: 'proxy-wasm'; result: FilterResult };

export class TryVersion {
  private readonly targets: TargetCache;
  /** Targets worked out for builds about to be recorded succeeded, by build id (buildSucceeding → buildSucceeded). */
  private readonly ready = new Lru<string, Target>(256);

  constructor(
    private readonly lookups: Lookups,
    readonly testbed: RunnerTestbed,
    private readonly config: TestbedConfig,
  ) {
    this.targets = new TargetCache(lookups, config.previewCacheMs);
  }

  /** Runs the latest successful build once (POST /v1/versions/:id/invoke). */
  async invoke(ownerId: string, versionId: string, body: InvokeBody, caller: CallerConnection): Promise<InvokeResult> {
    const target = await this.targets.get(ownerId, versionId, body.variant);
    checkLimits(body, this.config);
    if (target.kind === 'wasi-command') return { kind: target.kind, json: await this.invokeFunction(target, body) };
    if (target.kind === 'http-component') return { kind: target.kind, json: await this.invokeComponent(target, body, caller) };
    return { kind: 'proxy-wasm', json: await this.invokeFilter(target, body, caller) };
  }

  /** Real HTTP through a filter to its upstream, or to an http-component (ANY /preview/:id/*). */
  async preview(ownerId: string, versionId: string, incoming: HttpRequestData, connection: Partial<ConnectionInfo>): Promise<PreviewResult> {
    const target = await this.targets.get(ownerId, versionId);
    if (target.kind === 'wasi-command') throw badRequest('not_a_filter', `version ${versionId} is a ${target.kind}; the preview URL runs filters and http-components (use POST /v1/versions/${versionId}/invoke)`);
    if (target.kind === 'http-component') return { kind: 'http-component', result: await this.testbed.invokeComponent(ownerId, target.version.id, target.artifact, incoming) };
    const upstream = target.preview.upstream ?? ECHO_UPSTREAM;
    if (!this.testbed.upstreams.has(upstream)) throw this.unknownUpstream(upstream);
    return { kind: 'proxy-wasm', result: await this.testbed.serveFilter(target.artifact, target.plugin, incoming, connection, upstream, target.preview.freshInstance) };
  }

  /**
   * A function's or filter's report was judged a success and is about to be
   * committed (decision 0040): what the version will run as is worked out
   * now, its module compiled on every runner and a filter's warm VM started
   * on a free slot, so that the build is seen succeeded only once its first
   * call finds all of that ready. The caller bounds the wait
   * (KILN_TESTBED_READY_WAIT_MS); nothing here can fail the build, and no
   * owner is charged (the warm VM takes only a slot that is free).
   * Components are left to buildSucceeded: transpiling takes seconds.
   */
  async buildSucceeding({ build, version }: SucceedingBuild): Promise<void> {
    const kind = build.kind ?? version.kind;
    if (kind !== 'proxy-wasm' && kind !== 'wasi-command') return;
    const application = await this.lookups.applications.get(build.ownerId, version.applicationId);
    const target = targetOf(this.lookups, version, build, application);
    this.ready.set(build.id, target);
    await Promise.all([this.testbed.precompile(target.artifact, target.kind), this.warm(target)]);
  }

  /**
   * A build succeeded (committed): the version's cache entry is filled with
   * what buildSucceeding worked out, so the first request reads nothing from
   * the database. Without that (a component, no wait configured, or the
   * report came another way), the module is compiled (a component:
   * transpiled and pre-warmed) on the runners now and a filter's version
   * looked up and its warm VM started, racing the first request. All of it
   * only saves time: a failure shows again, with its error, on first use.
   */
  buildSucceeded(build: Build): void {
    const ready = this.ready.get(build.id);
    this.ready.delete(build.id);
    if (ready && ready.artifact.sha256 === chosenArtifact(build)?.sha256) {
      this.targets.fill(build.ownerId, build.versionId, ready);
      return;
    }
    const kind = build.kind;
    if (kind !== 'proxy-wasm' && kind !== 'wasi-command' && kind !== 'http-component') return;
    const record = chosenArtifact(build);
    if (!record) return;
    void this.testbed.precompile(artifactRef(this.lookups, record), kind);
    if (kind !== 'proxy-wasm') return;
    void this.targets
      .get(build.ownerId, build.versionId)
      .then((target) => this.warm(target))
      .catch(() => undefined);
  }

  /** Starts a filter's warm VM on a free slot; a version that asks for a fresh instance per request never uses one. */
  private async warm(target: Target): Promise<void> {
    if (target.kind === 'proxy-wasm' && !target.preview.freshInstance) await this.testbed.warmFilter(target.artifact, target.plugin);
  }

  private async invokeFunction(target: Target, body: InvokeBody) {
    refuseFields(body, FILTER_FIELDS, target.kind);
    const stdin = bodyBytes(body.input, this.config.maxBodyBytes, 'input');
    const result = await this.testbed.invokeFunction(target.artifact, { ownerId: target.plugin.info.ownerId, stdin, args: [target.plugin.info.name, ...(body.args ?? [])], env: body.env ?? {}, ...body.limits });
    return functionResultJson(result, { maxBodyBytes: this.config.maxResultBodyBytes });
  }

  private async invokeFilter(target: Target, body: InvokeBody, caller: CallerConnection) {
    refuseFields(body, FUNCTION_FIELDS, target.kind);
    const max = this.config.maxBodyBytes;
    const httpRequest = requestData(body.request, caller.host, max);
    const upstream = body.upstream ?? target.preview.upstream ?? ECHO_UPSTREAM;
    if (!body.response && !this.testbed.upstreams.has(upstream)) throw this.unknownUpstream(upstream);
    const simulatedCalls = body.httpCallResponses
      ? Object.fromEntries(Object.entries(body.httpCallResponses).map(([name, response]) => [name, responseData(response, max, `httpCallResponses.${name}`)]))
      : undefined;
    const result = await this.testbed.invokeFilter(target.artifact, target.plugin, {
      request: httpRequest,
      connection: { sourceAddress: body.request?.sourceAddress ?? caller.sourceAddress, sourcePort: caller.sourcePort, destinationAddress: caller.destinationAddress, destinationPort: caller.destinationPort },
      upstream,
      ...(body.response ? { response: responseData(body.response, max, 'response') } : {}),
      ...(simulatedCalls ? { httpCallResponses: simulatedCalls } : {}),
      ticks: body.ticks ?? 0,
      logLevel: LOG_LEVELS.indexOf(body.logLevel ?? 'trace'),
      ...body.limits,
    });
    return filterResultJson(result, httpRequest, { name: upstream, simulated: body.response !== undefined }, { maxBodyBytes: this.config.maxResultBodyBytes });
  }

  /** An http-component answers the request itself: there is no upstream to simulate and no stdin. */
  private async invokeComponent(target: Target, body: InvokeBody, caller: CallerConnection) {
    refuseFields(body, COMPONENT_REFUSED_FIELDS, target.kind);
    if (body.limits?.memoryMb !== undefined) throw badRequest('invalid_limits', `limits.memoryMb does not apply to an http-component; its memory cap is the operator's (${this.config.memoryCapMb} MB)`);
    const httpRequest = requestData(body.request, caller.host, this.config.maxBodyBytes);
    const limits = body.limits?.timeoutMs === undefined ? {} : { timeoutMs: body.limits.timeoutMs };
    return componentResultJson(await this.testbed.invokeComponent(target.plugin.info.ownerId, target.version.id, target.artifact, httpRequest, limits));
  }

  private unknownUpstream(name: string) {
    const allowed = this.testbed.upstreams
      .names()
      .map((n) => JSON.stringify(n))
      .join(', ');
    return badRequest('unknown_upstream', `no test bed upstream is named ${JSON.stringify(name)}; the operator allows ${allowed} (KILN_TESTBED_UPSTREAMS)`);
  }
}

function checkLimits(body: InvokeBody, config: TestbedConfig): void {
  const limits = body.limits ?? {};
  if (limits.timeoutMs !== undefined && limits.timeoutMs > config.maxTimeoutMs) throw badRequest('invalid_limits', `limits.timeoutMs may be at most ${config.maxTimeoutMs}`);
  if (limits.memoryMb !== undefined && limits.memoryMb > config.memoryCapMb) throw badRequest('invalid_limits', `limits.memoryMb may be at most ${config.memoryCapMb}`);
}

const FILTER_FIELDS = ['request', 'response', 'upstream', 'httpCallResponses', 'ticks', 'logLevel'] as const;
const FUNCTION_FIELDS = ['input', 'args', 'env'] as const;
const COMPONENT_REFUSED_FIELDS = ['response', 'upstream', 'httpCallResponses', 'ticks', 'logLevel', 'input', 'args', 'env'] as const;

function refuseFields(body: InvokeBody, fields: readonly (keyof InvokeBody)[], kind: AppKind): void {
  const wrong = fields.filter((field) => body[field] !== undefined);
  if (wrong.length > 0) throw badRequest('wrong_input_for_kind', `this version is a ${kind}; ${wrong.join(', ')} ${wrong.length === 1 ? 'applies' : 'apply'} only to the other kind`);
}

/** `preview.upstream` from the version's config, when the config is a JSON object that has it. */
export function previewUpstream(config: string): string | undefined {
  const preview = previewSettings(config);
  return typeof preview?.upstream === 'string' ? preview.upstream : undefined;
}

/** `preview.freshInstance: true` in the version's config: a new VM per preview request (nothing survives a request). */
export function previewFreshInstance(config: string): boolean {
  return previewSettings(config)?.freshInstance === true;
}

/**
 * `preview.rootId` in the version's config: the plugin's root_id (Envoy's
 * PluginConfig.root_id), which the filter reads as plugin_root_id. SDKs that
 * pick their root context by that name (proxy-runtime's registerRootContext,
 * the C++ SDK) need it; empty when none is configured, as in Envoy.
 */
export function previewRootId(config: string): string {
  const rootId = previewSettings(config)?.rootId;
  return typeof rootId === 'string' ? rootId : '';
}

function previewSettings(config: string): Record<string, unknown> | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(config);
  } catch {
    return undefined;
  }
  const preview = isRecord(parsed) ? parsed.preview : undefined;
  return isRecord(preview) ? preview : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function resolveTarget(lookups: Lookups, ownerId: string, versionId: string, variant?: Variant): Promise<Target> {
  const version = await lookups.versions.get(ownerId, versionId);
  if (!version) throw notFound('version', versionId);
  const [build, application] = await Promise.all([lookups.builds.latestSucceeded(version.id), lookups.applications.get(ownerId, version.applicationId)]);
  if (!build) throw conflict('no_artifact', `version ${version.id} has no successful build yet; see GET /v1/builds?versionId=${version.id}`);
  return targetOf(lookups, version, build, application, variant);
}

/** What `version` runs as with `build`'s artifact (the optimized one unless `variant` says otherwise). */
function targetOf(lookups: Lookups, version: Version, build: Build, application: { name: string } | undefined, variant?: Variant): Target {
  const chosen = variant ?? (build.artifacts.optimized ? 'optimized' : 'original');
  const record = build.artifacts[chosen];
  if (!record) throw notFound('artifact variant', chosen);
  const kind = build.kind ?? version.kind;
  if (kind !== 'proxy-wasm' && kind !== 'wasi-command' && kind !== 'http-component') throw unprocessable('unknown_kind', `version ${version.id} has no app kind the test bed can run`);
  return {
    version,
    kind,
    artifact: artifactRef(lookups, record),
    plugin: {
      info: { ownerId: version.ownerId, name: application?.name ?? version.id, rootId: previewRootId(version.config), vmId: version.id, versionId: version.id, version: version.version, applicationId: version.applicationId },
      config: version.config,
    },
    preview: { upstream: previewUpstream(version.config), freshInstance: previewFreshInstance(version.config) },
  };
}

/** The artifact a build runs as by default: the optimized one when it has one. */
function chosenArtifact(build: Build): ArtifactRecord | undefined {
  return build.artifacts.optimized ?? build.artifacts.original;
}

function artifactRef(lookups: Lookups, record: ArtifactRecord): ArtifactRef {
  return { sha256: record.sha256, load: async () => new Uint8Array((await lookups.objects.getBuffer(record.key)).body) };
}

/**
 * What a version runs as, kept for `ttlMs` per owner and version: the
 * version, its latest successful build and its artifact do not change while
 * they exist, so a hot version costs no database round trip per call. The
 * key includes the owner, so another owner's lookup still reaches the
 * database (and its 404); a deleted version is served at most `ttlMs` longer.
 * An entry used in the second half of its life is looked up again in the
 * background (refresh-ahead), so a hot version never waits for the database
 * and is still never older than `ttlMs`; a failed refresh drops the entry.
 */
class TargetCache {
  private readonly entries = new Lru<string, { target: Target; until: number; refreshing: boolean }>(1000);

  constructor(
    private readonly lookups: Lookups,
    private readonly ttlMs: number,
  ) {}

  async get(ownerId: string, versionId: string, variant?: Variant): Promise<Target> {
    const key = `${ownerId}:${versionId}:${variant ?? ''}`;
    const cached = this.entries.get(key);
    const now = Date.now();
    if (cached && cached.until > now) {
      if (!cached.refreshing && cached.until - now < this.ttlMs / 2) this.refresh(key, cached, ownerId, versionId, variant);
      return cached.target;
    }
    const target = await resolveTarget(this.lookups, ownerId, versionId, variant);
    if (this.ttlMs > 0) this.entries.set(key, { target, until: Date.now() + this.ttlMs, refreshing: false });
    return target;
  }

  /** What a version runs as, known without a look-up (its build was just committed): kept as a fresh entry. */
  fill(ownerId: string, versionId: string, target: Target): void {
    if (this.ttlMs > 0) this.entries.set(`${ownerId}:${versionId}:`, { target, until: Date.now() + this.ttlMs, refreshing: false });
  }

  private refresh(key: string, entry: { refreshing: boolean }, ownerId: string, versionId: string, variant: Variant | undefined): void {
    entry.refreshing = true;
    resolveTarget(this.lookups, ownerId, versionId, variant).then(
      (target) => this.entries.set(key, { target, until: Date.now() + this.ttlMs, refreshing: false }),
      // Gone or failing: the next call looks it up itself and gets the answer (a 404, say).
      () => this.entries.delete(key),
    );
  }
}
