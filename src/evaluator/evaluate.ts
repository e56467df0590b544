import { UserError } from '../errors.ts';
import type { ObjectStore } from '../store/objects/object-store.ts';
import { inspectComponent, isComponentBinary } from '../wasm/component.ts';
import { checkComponentKind } from '../wasm/component-kind.ts';
import { inspectModule, type ModuleInfo } from '../wasm/inspect.ts';
import type { EarlyInspections } from './early-inspections.ts';
import { inspectOffThread, type Inspection, type InspectLimits } from './inspect-thread.ts';
import { checkKind, detectKind, type AppKind } from '../wasm/kind.ts';
import type { CompletionReport } from '../queue/complete.ts';
import type { ArtifactRecord, ArtifactVariant, JobResult } from '../worker/protocol.ts';

interface EvaluationInput {
  /** What the worker reported (already validated against the protocol's JobResult). */
  report: JobResult;
  /** The kind the uploader declared, if any. */
  declaredKind: string | null;
  declaredLanguage: string | null;
  /** Where this attempt's artifacts were uploaded (variant → key). */
  artifactKeys: Record<ArtifactVariant, string>;
  /** Bounds on inspecting each artifact (done off the event loop). */
  inspect: InspectLimits;
  /** Inspections started when the artifacts were stored (early-inspections.ts): used for the objects they inspected. */
  early?: EarlyInspections;
}

/** How long one artifact's validation may take before the build fails for it. */
export const INSPECT_DEADLINE_MS = 60_000;

export type ModuleVerdict = { ok: true; kind: AppKind } | { ok: false; reason: string };

/**
 * The API's judgement of what a worker reports. A worker is trusted to run
 * the build, not to decide that its output is fit: a build succeeds only if
 * the stored original artifact is valid Wasm whose imports and exports fit the
 * kind. An optimized variant that does not pass is dropped (the original is
 * served) and the reason kept in the build's details.
 */
export async function evaluateReport(objects: ObjectStore, input: EvaluationInput): Promise<CompletionReport> {
  const { report } = input;
  const base: CompletionReport = {
    outcome: report.outcome,
    reason: report.reason ?? null,
    language: report.language ?? input.declaredLanguage,
    kind: report.kind ?? input.declaredKind,
    stages: report.stages,
    artifacts: {},
    details: report.details ?? {},
  };
  if (report.outcome !== 'succeeded') return base;

  const [original, optimized] = await Promise.all([objects.head(input.artifactKeys.original), objects.head(input.artifactKeys.optimized)]);
  if (!original) throw new UserError('invalid', 'artifact_missing', 'upload the original artifact (PUT …/artifacts/original) before reporting success');
  const wantedKind = (input.declaredKind ?? report.kind ?? null) as AppKind | null;
  // Both variants are judged at once (the report waits for this); the optimized one must be of the original's kind.
  // The optimized judgement's own error only counts once the original passed, as when they ran in turn.
  const judgingOptimized = optimized ? judgeModule(objects, optimized, wantedKind, input).then((value) => ({ value }), (error: unknown) => ({ error })) : undefined;
  const verdict = await judgeModule(objects, original, wantedKind, input);
  const optimizedJudged = await judgingOptimized;
  if (!verdict.ok) return { ...base, outcome: 'failed', reason: verdict.reason };
  if (optimizedJudged && 'error' in optimizedJudged) throw optimizedJudged.error;
  const firstOptimizedVerdict = optimizedJudged?.value;

  const artifacts: Record<string, ArtifactRecord> = { original: { key: original.key, sha256: original.sha256, size: original.size } };
  const details = { ...base.details };
  if (optimized && firstOptimizedVerdict) {
    // Only when the kind was not known beforehand can the two verdicts differ in kind: then judge again against the original's.
    const sameKind = firstOptimizedVerdict.ok && firstOptimizedVerdict.kind === verdict.kind;
    const optimizedVerdict = sameKind || wantedKind !== null ? firstOptimizedVerdict : await judgeModule(objects, optimized, verdict.kind, input);
    if (optimizedVerdict.ok) artifacts.optimized = { key: optimized.key, sha256: optimized.sha256, size: optimized.size };
    else details.optimizedRejected = optimizedVerdict.reason;
  }
  return { ...base, kind: verdict.kind, artifacts, details };
}

async function judgeModule(objects: ObjectStore, stored: { key: string; sha256: string }, wantedKind: AppKind | null, input: Pick<EvaluationInput, 'inspect' | 'early'>): Promise<ModuleVerdict> {
  // Started when these very bytes were stored (same key and digest): a core module, already inspected or being inspected.
  const early = await input.early?.take(stored.key, stored.sha256);
  if (early) return verdictOf(early, wantedKind);
  const { body } = await objects.getBuffer(stored.key);
  // A component's names are read by a small bounded parser (no compilation): cheap enough here.
  if (isComponentBinary(body)) return judgeComponent(body, wantedKind);
  return verdictOf(await inspectOffThread(body, input.inspect), wantedKind);
}

function verdictOf(inspection: Inspection, wantedKind: AppKind | null): ModuleVerdict {
  if (!inspection.ok) return { ok: false, reason: `the build produced an invalid WebAssembly module: ${inspection.reason}` };
  return judgeModuleInfo(inspection.info, wantedKind);
}

/**
 * The same verdict on bytes, synchronously on this thread (tests and small
 * artifacts; the evaluator itself inspects core modules off the event loop).
 */
export function judgeArtifact(body: Uint8Array, wantedKind: AppKind | null): ModuleVerdict {
  if (isComponentBinary(body)) return judgeComponent(body, wantedKind);
  let info: ModuleInfo;
  try {
    info = inspectModule(body);
  } catch (error) {
    if (error instanceof UserError) return { ok: false, reason: `the build produced an invalid WebAssembly module: ${error.message}` };
    throw error;
  }
  return judgeModuleInfo(info, wantedKind);
}

function judgeModuleInfo(info: ModuleInfo, wantedKind: AppKind | null): ModuleVerdict {
  const kind = wantedKind ?? detectKind(info);
  if (!kind) return { ok: false, reason: 'the module is neither a proxy-wasm filter nor a WASI command (no proxy_abi_version_* or _start export); declare the kind or fix the exports' };
  const check = checkKind(info, kind);
  if (!check.ok) return { ok: false, reason: `the module does not fit the ${kind} kind: ${check.problems.join(' ')}` };
  return { ok: true, kind };
}

function judgeComponent(body: Uint8Array, wantedKind: AppKind | null): ModuleVerdict {
  if (wantedKind !== null && wantedKind !== 'http-component') {
    return { ok: false, reason: `the build produced a WebAssembly component, but a ${wantedKind} must be a core module; declare the kind http-component for a wasi:http component` };
  }
  let info;
  try {
    info = inspectComponent(body);
  } catch (error) {
    if (error instanceof UserError) return { ok: false, reason: `the build produced an invalid WebAssembly component: ${error.message}` };
    throw error;
  }
  const check = checkComponentKind(info);
  if (!check.ok) return { ok: false, reason: `the component does not fit the http-component kind: ${check.problems.join(' ')}` };
  return { ok: true, kind: 'http-component' };
}
