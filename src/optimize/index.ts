/**
 * Build optimizations: the optimize stage (strip, Wizer, wasm-opt, memory
 * cap, start-up measurement). See docs/decisions/0005-build-optimizations.md.
 * The dependency cache is the build's own: src/build-cache.
 */
export { optimizeArtifact, optimizeSafely } from './optimize.ts';
export type { OptimizeDetails, OptimizeInput, OptimizeReport, OptimizeResult, SafeOptimizeResult, StepReport, VariantReport } from './optimize.ts';
export { OptimizeCancelled } from './tool-run.ts';
export { OPTIMIZE_CACHE_MAX_BYTES, OptimizeResultCache } from './result-cache.ts';
export { measureStartup, isStartupTimes } from './startup.ts';
export type { StartupMeasurement, StartupTimes } from './startup.ts';
export { stripCustomSections } from './strip.ts';
export { WIZER_INIT_EXPORT } from './wizer.ts';
