/**
 * The optimize stage for http-components: every step Kiln has works on core
 * modules, so for a component each requested step is recorded as skipped
 * with the reason, and the original is served. Nothing runs, so this costs
 * no sandbox time.
 */
import type { OptimizeOptions } from './options.ts';
import type { OptimizeResult, StepName, StepReport } from './optimize.ts';

const WHY_SKIPPED: Readonly<Record<StepName, string>> = {
  strip: 'custom sections of a component are nested in its core modules; Kiln strips core modules only',
  wizer:
    'a component cannot be pre-initialized by Wizer; componentize-js already snapshots the JavaScript engine after the top level ran (Wizer inside the build)',
  'wasm-opt': 'wasm-opt (binaryen) reads core modules, not components',
  'memory-cap': 'a component has no memory of its own to cap; the test bed caps each core memory when it runs the component',
};

function requested(options: OptimizeOptions): StepName[] {
  const steps: StepName[] = [];
  if (options.strip) steps.push('strip');
  if (options.wizer) steps.push('wizer');
  if (options.wasmOpt !== 'off') steps.push('wasm-opt');
  if (options.memoryCapPages !== null) steps.push('memory-cap');
  return steps;
}

export function skipComponentOptimization(original: Uint8Array, options: OptimizeOptions, log: (line: string) => void): OptimizeResult {
  const steps: StepReport[] = requested(options).map((name) => ({ name, status: 'skipped', reason: WHY_SKIPPED[name], durationMs: 0 }));
  for (const step of steps) log(`kiln: optimize: ${step.name} skipped: ${step.reason}`);
  const startupNote = 'start-up is measured by the test bed (instantiate time of a pre-warmed instance), not by the optimize stage, for components';
  if (steps.length > 0) log(`kiln: optimize: ${startupNote}`);
  return { details: { variants: { original: { bytes: original.length, startup: null } }, optimize: { steps, served: 'original' } } };
}
