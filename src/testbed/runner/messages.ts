/**
 * What the API and a test bed runner say to each other over the wire
 * (wire.ts). Everything here is plain data: artifacts are named by sha256
 * and fetched by the runner, which verifies them.
 */
import type { TestbedConfig } from '../config.ts';
import type { ConnectionInfo, HttpRequestData } from '../http-message.ts';
import type { FilterInvocation, FunctionInvocation, PluginSettings } from '../testbed.ts';
import type { AppKind } from '../../wasm/kind.ts';
import type { ComponentLimits } from '../component/index.ts';

/** The runner's first message: what it offers. */
export interface RunnerHello {
  /** Calls it runs at once (one worker thread each). */
  slots: number;
  pid: number;
  /** Execution kinds it can run (see dispatch in runner.ts). */
  kinds: string[];
  name: string;
  /** It keeps a call sent ahead on its main thread until the slot's running call ends, and honours recalls (decision 0043). */
  sendAhead?: boolean;
}

/** The test bed settings the API hands every runner (URLs as text: they cross by structured clone). */
export type WireTestbedConfig = Omit<TestbedConfig, 'upstreams'> & { upstreams: Array<[string, string]> };

export interface Assignment {
  /** The runner slot this call holds for its whole duration. */
  slot: number;
  sha256: string;
  kind: AppKind;
  /** Names the call for a recall (decision 0043): unique per API connection. */
  ticket: number;
}

/** API → runner, one-way: a call sent ahead (OPS.recall) that has not started is answered `runner_call_recalled` instead. */
export interface Recall {
  slot: number;
  ticket: number;
}

/** The error code a recalled call is answered with. */
export const RECALLED_CODE = 'runner_call_recalled';

export type RunnerCall =
  | { kind: 'wasi-command'; op: 'invoke'; assignment: Assignment; invocation: FunctionInvocation }
  | { kind: 'proxy-wasm'; op: 'invoke'; assignment: Assignment; plugin: PluginSettings; invocation: FilterInvocation }
  | { kind: 'proxy-wasm'; op: 'warm'; assignment: Assignment; plugin: PluginSettings }
  | { kind: 'proxy-wasm'; op: 'serve'; assignment: Assignment; plugin: PluginSettings; request: HttpRequestData; connection: Partial<ConnectionInfo>; upstream: string; fresh: boolean }
  | { kind: 'http-component'; op: 'invoke'; assignment: Assignment; ownerId: string; request: HttpRequestData; limits: ComponentLimits };

export interface CompileOrder {
  sha256: string;
  kind: AppKind;
}

export const OPS = {
  /** API → runner, once after hello: the settings. */
  configure: 'configure',
  /** API → runner: run one call (RunnerCall). */
  call: 'call',
  /** API → runner: compile this module now (a build just succeeded); answered once it is compiled. */
  compile: 'compile',
  /** API → runner, one-way: take back a call sent ahead on a slot if it has not started (Recall). */
  recall: 'recall',
  /** Runner → API: the bytes of an artifact, by sha256. */
  artifact: 'artifact',
} as const;

export function toWireConfig(config: TestbedConfig): WireTestbedConfig {
  return { ...config, upstreams: [...config.upstreams].map(([name, url]) => [name, url.href]) };
}

export function fromWireConfig(config: WireTestbedConfig): TestbedConfig {
  return { ...config, upstreams: new Map(config.upstreams.map(([name, href]) => [name, new URL(href)])) };
}
