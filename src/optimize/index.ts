/**
 * Build optimizations: the optimize stage (strip, Wizer, wasm-opt, memory
 * cap, start-up measurement) and the dependency cache. See
 * docs/decisions/0005-build-optimizations.md and docs/dependency-cache.md.
 */
export { optimizeArtifact, optimizeSafely } from './optimize.ts';
export type { OptimizeDetails, OptimizeInput, OptimizeReport, OptimizeResult, SafeOptimizeResult, StepReport, VariantReport } from './optimize.ts';
export { DependencyCacheStore } from './cache/store.ts';
export type { DependencyCacheOptions } from './cache/store.ts';
export type { CacheReport } from './cache/build-cache.ts';
export { OptimizeCancelled } from './tool-run.ts';
export { OPTIMIZE_CACHE_MAX_BYTES, OptimizeResultCache } from './result-cache.ts';
export { measureStartup, isStartupTimes } from './startup.ts';
export type { StartupMeasurement, StartupTimes } from './startup.ts';
export { stripCustomSections } from './strip.ts';
export { WIZER_INIT_EXPORT } from './wizer.ts';
