/**
 * The test bed as the API process sees it since decision 0012: the same
 * calls as Testbed (testbed.ts), each sent to a runner process on a slot the
 * fair-share scheduler grants its owner. Nothing here compiles or
 * instantiates tenant Wasm.
 */
import type { AppKind } from '../../wasm/kind.ts';
import type { ComponentLimits, ComponentResult } from '../component/index.ts';
import type { TestbedConfig } from '../config.ts';
import type { ConnectionInfo, HttpRequestData } from '../http-message.ts';
import type { ArtifactRef } from '../modules.ts';
import { emptyRecording } from '../recorder.ts';
import type { FilterInvocation, FilterResult, FunctionInvocation, FunctionResult, ModuleSummary, PluginSettings } from '../testbed.ts';
import { Upstreams } from '../upstream.ts';
import type { RunnerInfo } from './hub.ts';
import { RunnerHub, RunnerLostError } from './hub.ts';
import { LocalRunners } from './local.ts';

export class RunnerTestbed {
  readonly hub: RunnerHub;
  /** Names only, to validate requests: the runners make the upstream calls. */
  readonly upstreams: Upstreams;
  private readonly local: LocalRunners | undefined;
  private localStarted = false;

  constructor(readonly config: TestbedConfig) {
    // Never sends: it opens no connection pool (socketsPerOwner 0 would be unused).
    this.upstreams = new Upstreams(config.upstreams, { timeoutMs: config.upstreamTimeoutMs, maxResponseBytes: config.maxBodyBytes, socketsPerOwner: config.upstreamSocketsPerOwner, maxOwnerPools: 1 });
    this.hub = new RunnerHub(config, {
      ownerSlots: config.ownerSlots,
      ownerQueue: config.ownerQueue,
      queueWaitMs: config.queueWaitMs,
      ownerRate: config.ownerRate,
      ownerBurst: config.ownerBurst,
    });
    if (config.localRunners > 0) {
      this.local = new LocalRunners({
        count: config.localRunners,
        slots: config.workers,
        heapMb: config.runnerHeapMb,
        attach: (stream) => this.hub.attach(stream, 'local'),
      });
      if (config.prewarm) this.startLocal();
    }
  }

  invokeFunction(artifact: ArtifactRef, invocation: FunctionInvocation): Promise<FunctionResult> {
    this.startLocal();
    const started = performance.now();
    return this.hub
      .run<FunctionResult>(invocation.ownerId, artifact.sha256, artifact, 'wasi-command', (assignment) => ({ kind: 'wasi-command', op: 'invoke', assignment, invocation }))
      .catch((error: unknown) => {
        if (!(error instanceof RunnerLostError)) throw error;
        return { outcome: 'runner_lost', message: error.message, exitCode: null, stdout: new Uint8Array(0), stderr: new Uint8Array(0), stdoutTruncated: false, stderrTruncated: false, unimplemented: [], durationMs: performance.now() - started, module: unknownModule(artifact) };
      });
  }

  invokeFilter(artifact: ArtifactRef, plugin: PluginSettings, invocation: FilterInvocation): Promise<FilterResult> {
    this.startLocal();
    const started = performance.now();
    return this.hub
      .run<FilterResult>(plugin.info.ownerId, plugin.info.versionId, artifact, 'proxy-wasm', (assignment) => ({ kind: 'proxy-wasm', op: 'invoke', assignment, plugin, invocation }))
      .catch((error: unknown) => lostFilter(error, artifact, started));
  }

  /** One request through the version's warm VM (the preview URL), or a fresh one per request. */
  serveFilter(artifact: ArtifactRef, plugin: PluginSettings, request: HttpRequestData, connection: Partial<ConnectionInfo>, upstream: string, fresh = false): Promise<FilterResult> {
    this.startLocal();
    const started = performance.now();
    return this.hub
      .run<FilterResult>(plugin.info.ownerId, plugin.info.versionId, artifact, 'proxy-wasm', (assignment) => ({ kind: 'proxy-wasm', op: 'serve', assignment, plugin, request, connection, upstream, fresh }))
      .catch((error: unknown) => lostFilter(error, artifact, started));
  }

  /**
   * One request to an http-component (invoke and the preview URL alike). It
   * holds its owner's slot for the call; the component itself runs in the
   * runner's component worker (component/index.ts), never in this process.
   */
  invokeComponent(ownerId: string, versionId: string, artifact: ArtifactRef, request: HttpRequestData, limits: ComponentLimits = {}): Promise<ComponentResult> {
    this.startLocal();
    const started = performance.now();
    return this.hub
      .run<ComponentResult>(ownerId, versionId, artifact, 'http-component', (assignment) => ({ kind: 'http-component', op: 'invoke', assignment, ownerId, request, limits }))
      .catch((error: unknown) => lostComponent(error, artifact, started));
  }

  /**
   * A build succeeded (or is about to be recorded so): the runners compile
   * its module now, so the first call finds it ready. Resolves when every
   * connected runner has answered; never rejects.
   */
  precompile(artifact: ArtifactRef, kind: AppKind): Promise<void> {
    this.startLocal();
    return this.hub.compileEverywhere(artifact, kind);
  }

  /**
   * A filter's build succeeded: its warm VM is started now on a free slot
   * (which its version then prefers), so the first preview request finds the
   * module compiled and the VM running. Skipped when no slot is free.
   */
  async warmFilter(artifact: ArtifactRef, plugin: PluginSettings): Promise<boolean> {
    this.startLocal();
    const started = await this.hub.runIdle<boolean>(plugin.info.versionId, artifact, 'proxy-wasm', (assignment) => ({ kind: 'proxy-wasm', op: 'warm', assignment, plugin }));
    return started === true;
  }

  runners(): RunnerInfo[] {
    return this.hub.runners();
  }

  /** Local runner processes' pids (tests kill them; operators see them in /v1/testbed/runners). */
  localPids(): number[] {
    return this.local?.pids() ?? [];
  }

  async close(): Promise<void> {
    this.upstreams.close();
    this.hub.close();
    await this.local?.stop();
  }

  private startLocal(): void {
    if (this.localStarted || !this.local) return;
    this.localStarted = true;
    this.local.start();
  }
}

function unknownModule(artifact: ArtifactRef): ModuleSummary {
  return { sha256: artifact.sha256, size: 0, memoryCapBytes: 0, compileMs: 0 };
}

function lostComponent(error: unknown, artifact: ArtifactRef, started: number): ComponentResult {
  if (!(error instanceof RunnerLostError)) throw error;
  return {
    kind: 'http-component',
    outcome: 'runner_lost',
    message: error.message,
    response: null,
    logs: [],
    droppedLogBytes: 0,
    outgoing: [],
    droppedOutgoing: 0,
    module: { sha256: artifact.sha256, size: 0, memoryCapBytes: 0, prepareMs: 0 },
    timings: { totalMs: performance.now() - started, instantiateMs: 0, handleMs: 0, prewarmed: false },
  };
}

function lostFilter(error: unknown, artifact: ArtifactRef, started: number): FilterResult {
  if (!(error instanceof RunnerLostError)) throw error;
  return {
    outcome: 'runner_lost',
    message: error.message,
    recording: emptyRecording(),
    httpCalls: [],
    metrics: [],
    sharedData: [],
    guestMs: 0,
    durationMs: performance.now() - started,
    vmStarted: false,
    module: unknownModule(artifact),
  };
}
