import type { Mount } from '../sandbox/sandbox.ts';
import type { AppKind } from '../wasm/kind.ts';

// The kind is a property of the module (its imports and exports), so it is defined with the Wasm rules.
export type { AppKind };
export type LanguageId = 'rust' | 'c' | 'assemblyscript' | 'javascript' | 'typescript';
export const LANGUAGE_IDS: readonly LanguageId[] = ['rust', 'c', 'assemblyscript', 'javascript', 'typescript'];
export const APP_KINDS: readonly AppKind[] = ['proxy-wasm', 'wasi-command', 'http-component'];

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
