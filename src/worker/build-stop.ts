/**
 * How a build ends early, and the record of its stages: every part of the
 * build job (steps, output collection, dependencies) throws BuildStop with
 * the outcome it decided, and runBuild turns anything else into one.
 * Outcomes separate blame (BRIEF §2.1): `failed` is the user's, `crashed` is Kiln's.
 */
import { UserError, errorMessage } from '../errors.ts';
import type { BuildOutcome as ProtocolOutcome, StageTiming } from './protocol.ts';

// Declared once, in the worker protocol; the old names stay for the build job's readers.
export type BuildOutcomeState = ProtocolOutcome;
export type BuildStage = StageTiming;

/** Raised inside runBuild to end it with a given outcome. */
export class BuildStop extends Error {
  constructor(
    readonly outcome: Exclude<BuildOutcomeState, 'succeeded'>,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** Turns whatever ended the build into an outcome; unknown errors are ours (crashed). */
export function classify(error: unknown, signal: AbortSignal | undefined): BuildStop {
  if (error instanceof BuildStop) return error;
  if (signal?.aborted === true) return new BuildStop('cancelled', 'the build was cancelled');
  if (error instanceof UserError) return new BuildStop('failed', error.message);
  return new BuildStop('crashed', `platform error: ${errorMessage(error)}`);
}

export function throwIfCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new BuildStop('cancelled', 'the build was cancelled');
}

/** Runs one stage and records its timing, whether it succeeded or not. */
export async function stage<T>(stages: BuildStage[], name: string, work: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await work();
  } finally {
    stages.push({ name, startedAt: new Date(started).toISOString(), durationMs: Date.now() - started });
  }
}
