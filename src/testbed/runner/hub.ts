/**
 * The API's side of the runners: the connections (local pipes and remote
 * upgraded sockets), the artifacts they may ask for, and calls dispatched to
 * the slot the scheduler grants. The API never runs tenant code itself: what
 * it holds of a call is its input, its lease and a promise (decision 0012).
 */
import type { Duplex } from 'node:stream';
import { PlatformError } from '../../errors.ts';
import type { AppKind } from '../../wasm/kind.ts';
import type { TestbedConfig } from '../config.ts';
import { Lru } from '../lru.ts';
import type { ArtifactRef } from '../modules.ts';
import type { Assignment, CompileOrder, Recall, RunnerCall, RunnerHello } from './messages.ts';
import { OPS, RECALLED_CODE, toWireConfig } from './messages.ts';
import type { FairShareLimits, Lease } from './scheduler.ts';
import { SlotScheduler } from './scheduler.ts';
import { Peer, PeerClosedError } from './wire.ts';

export type RunnerOrigin = 'local' | 'remote';

export interface RunnerInfo {
  id: number;
  origin: RunnerOrigin;
  name: string;
  pid: number;
  slots: number;
  kinds: string[];
  /** Where it connected from (remote runners). */
  address?: string;
  connectedAt: string;
  calls: number;
}

interface Link {
  info: RunnerInfo;
  peer: Peer;
}

/** The runner holding the call went away before answering. */
export class RunnerLostError extends Error {
  constructor(readonly reason: string) {
    super(`the test bed runner running this call stopped (${reason}); the call is lost and the runner is being replaced — a module that crashes or exhausts its runner gets this outcome`);
    this.name = 'RunnerLostError';
  }
}

let runnerIds = 0;

export class RunnerHub {
  readonly scheduler: SlotScheduler;
  private readonly links = new Map<number, Link>();
  /** What runners may fetch: only artifacts the API sent them calls or compile orders for. */
  private readonly artifacts = new Lru<string, ArtifactRef>(1024);
  private readonly joinListeners: Array<(info: RunnerInfo) => void> = [];
  /** Versions being warmed (runIdle), and when that ends. */
  private readonly warming = new Map<string, Promise<void>>();
  private readonly leaveListeners: Array<(info: RunnerInfo, reason: string) => void> = [];
  private nextTicket = 1;

  constructor(
    private readonly config: TestbedConfig,
    limits: FairShareLimits,
  ) {
    this.scheduler = new SlotScheduler(limits);
  }

  /** Takes a fresh connection: waits for the runner's hello, answers with the settings, and offers its slots. */
  attach(stream: Duplex, origin: RunnerOrigin, address?: string): Peer {
    const peer = new Peer(stream);
    peer.handle(OPS.configure, (body) => this.join(peer, body as RunnerHello, origin, address));
    peer.handle(OPS.artifact, (body) => this.artifactBytes((body as { sha256: string }).sha256));
    return peer;
  }

  onJoin(listener: (info: RunnerInfo) => void): void {
    this.joinListeners.push(listener);
  }

  onLeave(listener: (info: RunnerInfo, reason: string) => void): void {
    this.leaveListeners.push(listener);
  }

  runners(): RunnerInfo[] {
    return [...this.links.values()].map((link) => ({ ...link.info }));
  }

  /**
   * Runs one call on a slot granted to its owner. A lost runner becomes
   * RunnerLostError; limits become TestbedLimitError (429/503).
   */
  async run<T>(ownerId: string, affinity: string, artifact: ArtifactRef, kind: AppKind, build: (assignment: Assignment) => RunnerCall): Promise<T> {
    // A call that arrives while its version is being warmed waits for it (bounded by the warm call's deadline):
    // it then finds the VM on the slot its version prefers, instead of starting a second one beside it.
    const warming = this.warming.get(affinity);
    if (warming) await warming;
    const queuedAt = performance.now();
    let lease = await this.scheduler.acquire(ownerId, affinity, { sendAhead: this.config.sendAhead });
    for (;;) {
      try {
        return await this.send<T>(lease, artifact, kind, build);
      } catch (error) {
        const recalled = isRecall(error) ? lease.recalled : undefined;
        if (recalled === undefined) throw error;
        if (recalled !== 'yield') throw recalled;
      } finally {
        lease.release();
      }
      // Taken back for another owner's turn: first in this owner's queue again, within what is left of its wait.
      lease = await this.scheduler.acquire(ownerId, affinity, { sendAhead: this.config.sendAhead, requeue: { waitMs: this.config.queueWaitMs - (performance.now() - queuedAt) } });
    }
  }

  /** The call on its leased slot; a lease granted ahead can be recalled until its runner starts it. */
  private async send<T>(lease: Lease, artifact: ArtifactRef, kind: AppKind, build: (assignment: Assignment) => RunnerCall): Promise<T> {
    const link = this.links.get(lease.runner);
    if (!link) throw new RunnerLostError('it disconnected just before the call');
    this.artifacts.set(artifact.sha256, artifact);
    link.info.calls++;
    const ticket = this.nextTicket++;
    const answer = link.peer.request<T>(OPS.call, build({ slot: lease.slot, sha256: artifact.sha256, kind, ticket }));
    if (lease.ahead) lease.onRecall(() => link.peer.notify(OPS.recall, { slot: lease.slot, ticket } satisfies Recall));
    try {
      return await answer;
    } catch (error) {
      if (error instanceof PeerClosedError) throw new RunnerLostError(error.reason);
      throw error;
    }
  }

  /**
   * Runs work for no owner (warming a just-built version) on a slot that is
   * free now, or not at all: undefined when every slot is busy or its
   * runner went away. Owners' calls always come first.
   */
  async runIdle<T>(affinity: string, artifact: ArtifactRef, kind: AppKind, build: (assignment: Assignment) => RunnerCall): Promise<T | undefined> {
    const lease = this.scheduler.takeIdle(affinity);
    if (!lease) return undefined;
    const link = this.links.get(lease.runner);
    if (!link) {
      lease.release();
      return undefined;
    }
    this.artifacts.set(artifact.sha256, artifact);
    const answer = link.peer.request<T>(OPS.call, build({ slot: lease.slot, sha256: artifact.sha256, kind, ticket: this.nextTicket++ }));
    const settled = answer.then(
      () => undefined,
      () => undefined,
    );
    this.warming.set(affinity, settled);
    try {
      return await answer;
    } catch (error) {
      if (error instanceof PeerClosedError) return undefined;
      throw error;
    } finally {
      if (this.warming.get(affinity) === settled) this.warming.delete(affinity);
      lease.release();
    }
  }

  /**
   * Asks every runner to compile a module now (a build succeeded), so its
   * first call is warm. Resolves when each runner has answered (compiled, or
   * failed: a module that does not compile fails again, with its 422, when
   * it is called) or gone; never rejects.
   */
  compileEverywhere(artifact: ArtifactRef, kind: AppKind): Promise<void> {
    this.artifacts.set(artifact.sha256, artifact);
    const answers = [...this.links.values()].map((link) => link.peer.request(OPS.compile, { sha256: artifact.sha256, kind } satisfies CompileOrder));
    return Promise.allSettled(answers).then(() => undefined);
  }

  close(): void {
    for (const link of this.links.values()) link.peer.close('the API is shutting down');
  }

  private join(peer: Peer, hello: RunnerHello, origin: RunnerOrigin, address: string | undefined): unknown {
    if (!Number.isInteger(hello.slots) || hello.slots < 1 || hello.slots > 64) throw new PlatformError('runner_bad_hello', `a runner must offer 1 to 64 slots, not ${String(hello.slots)}`);
    const info: RunnerInfo = { id: ++runnerIds, origin, name: String(hello.name), pid: Number(hello.pid), slots: hello.slots, kinds: hello.kinds.map(String), connectedAt: new Date().toISOString(), calls: 0, ...(address ? { address } : {}) };
    this.links.set(info.id, { info, peer });
    peer.onClose((reason) => {
      this.links.delete(info.id);
      this.scheduler.removeRunner(info.id, info.slots);
      for (const listener of this.leaveListeners) listener(info, reason);
    });
    // The slots are offered once the settings are on their way (the runner queues calls until it has them).
    setImmediate(() => {
      if (peer.closed) return;
      this.scheduler.addSlots(
        Array.from({ length: info.slots }, (_, slot) => ({ runner: info.id, slot })),
        { sendAhead: hello.sendAhead === true },
      );
      for (const listener of this.joinListeners) listener(info);
    });
    return toWireConfig(this.config);
  }

  private async artifactBytes(sha256: string): Promise<Uint8Array> {
    const artifact = this.artifacts.get(String(sha256));
    if (!artifact) throw new PlatformError('runner_unknown_artifact', `no call asked for artifact ${String(sha256)}`);
    return artifact.load();
  }
}

/** The runner answered that it dropped a call sent ahead before starting it. */
function isRecall(error: unknown): boolean {
  return error instanceof PlatformError && error.code === RECALLED_CODE;
}
