/**
 * The language's steps, one sandbox run each, under one wall limit for all
 * of them; the log gets a header per step and the first error line becomes
 * the reason when a step fails.
 */
import type { BuildContext, BuildStep, Language } from '../languages/language.ts';
import type { Sandbox, SandboxLimits, SandboxResult } from '../sandbox/sandbox.ts';
import { ErrorLineFinder, limitReason } from './build-diagnostics.ts';
import { BuildStop, stage, throwIfCancelled, type BuildStage } from './build-stop.ts';

export interface StepRunOptions {
  sandbox: Sandbox;
  onLog: (chunk: Buffer) => void;
  signal?: AbortSignal;
}

export async function runSteps(
  language: Language,
  context: BuildContext,
  limits: SandboxLimits,
  options: StepRunOptions,
  stages: BuildStage[],
): Promise<void> {
  const steps = await language.steps(context);
  const mounts = language.mounts(context);
  const deadline = Date.now() + limits.wallMs;
  for (const [index, step] of steps.entries()) {
    throwIfCancelled(options.signal);
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) throw new BuildStop('failed', limitReason('wall', limits));
    options.onLog(Buffer.from(stepHeader(step, index, steps.length)));
    const errors = new ErrorLineFinder();
    const run = await stage(stages, step.name, () =>
      options.sandbox.run({
        command: step.command,
        env: step.env,
        cwd: step.cwd,
        workDir: context.jobDir,
        mounts,
        // The wall limit is for the whole build, so later steps get what is left.
        limits: { ...limits, wallMs: remainingMs },
        onOutput: (chunk) => {
          errors.push(chunk);
          options.onLog(chunk);
        },
        signal: options.signal,
      }),
    );
    for (const note of run.notes) context.log(`kiln: ${note}`);
    checkStepResult(step, run, limits, errors.finish());
  }
}

function stepHeader(step: BuildStep, index: number, total: number): string {
  return `\n==> [${index + 1}/${total}] ${step.name}\n$ ${step.command.map(quoteForLog).join(' ')}\n`;
}

function quoteForLog(argument: string): string {
  return /^[\w@%+=:,./-]+$/.test(argument) ? argument : `'${argument.replace(/'/g, `'\\''`)}'`;
}

function checkStepResult(step: BuildStep, run: SandboxResult, limits: SandboxLimits, errorLine: string | undefined): void {
  if (run.cancelled) throw new BuildStop('cancelled', 'the build was cancelled');
  if (run.limitHit !== undefined) throw new BuildStop('failed', limitReason(run.limitHit, limits));
  if (run.exitCode === 0) return;
  if (run.exitCode === null) {
    throw new BuildStop('failed', `${step.name} was killed by ${run.signal ?? 'a signal'}`);
  }
  throw new BuildStop('failed', errorLine ?? `${step.name} failed with exit code ${run.exitCode}`);
}
