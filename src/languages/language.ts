import type { CachePlanAnswer } from '../build-cache/plan.ts';
import type { FetchConfig } from '../fetch/config.ts';
import type { FetchPlan } from '../fetch/fetch-phase.ts';
import type { Mount } from '../sandbox/sandbox.ts';
import type { AppKind } from '../wasm/app-kinds.ts';
import type { LanguageId } from './ids.ts';

// The kind is a property of the module (its imports and exports), so it is defined with the Wasm rules.
export { APP_KINDS, type AppKind } from '../wasm/app-kinds.ts';
export { LANGUAGE_IDS, type LanguageId } from './ids.ts';

export interface Detection {
  language: LanguageId;
  /** The kind, when the project itself says which it is. */
  kind?: AppKind;
}

/** One command of a build, run inside the sandbox. */
export interface BuildStep {
  name: string;
  command: string[];
  env: Record<string, string>;
  /** Inside the sandbox; the source is at /build/src. */
  cwd: string;
}

export interface BuildContext {
  /** Host path of the job directory (mounted at /build). */
  jobDir: string;
  /** Host path of the extracted source: `${jobDir}/src`, mounted at /build/src. */
  sourceDir: string;
  kind: AppKind;
  /** Appends a line to the build log (host-side facts, e.g. "Cargo.lock regenerated"). */
  log: (line: string) => void;
  /** Adds facts to the build record's details (e.g. which toolchain built it); merged shallowly. */
  record?: (facts: Record<string, unknown>) => void;
}

/**
 * A language is a folder under src/languages implementing this interface;
 * adding a language touches only that folder and the registry.
 */
export interface Language {
  readonly id: LanguageId;
  /** Looks at the extracted source (host side, no execution). */
  detect(sourceDir: string): Promise<Detection | undefined>;
  /**
   * Host-side preparation without running user code: remove files the
   * platform ignores (.cargo/config*, rust-toolchain*), write offline config.
   */
  prepare(context: BuildContext): Promise<void>;
  /** Read-only toolchain mounts the build needs beyond /usr. */
  mounts(context: BuildContext): Mount[];
  /** The commands to run in the sandbox, in order. */
  steps(context: BuildContext): Promise<BuildStep[]>;
  /** Path of the produced module relative to jobDir (checked safely by the worker). */
  locateOutput(context: BuildContext): Promise<string>;
}

/** Implemented by a language (next to its Language object) that has dependencies to fetch (src/fetch). */
export interface DependencyFetching {
  /** undefined: nothing to fetch. A UserError: the project's dependencies are unusable (no lock file...). */
  fetchPlan(context: BuildContext, config: FetchConfig): Promise<FetchPlan | undefined>;
}

export function supportsDependencyFetch(language: object): language is DependencyFetching {
  return typeof (language as Partial<DependencyFetching>).fetchPlan === 'function';
}

/** Implemented by a language (next to its Language object) that supports the dependency cache (src/build-cache). */
export interface DependencyCaching {
  cachePlan(context: BuildContext): Promise<CachePlanAnswer>;
}

export function supportsDependencyCache(language: object): language is DependencyCaching {
  return typeof (language as Partial<DependencyCaching>).cachePlan === 'function';
}
