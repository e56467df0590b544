import { formatBytes as formatSize } from '../../src/format/bytes.ts';
import type { Build } from './api.ts';

/** Kiln's one size format (src/format/bytes.ts), with a dash for a size the API did not give. */
export function formatBytes(bytes: number | undefined | null): string {
  if (bytes === undefined || bytes === null) return '–';
  return formatSize(bytes);
}

export function formatMs(ms: number | undefined | null): string {
  if (ms === undefined || ms === null) return '–';
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

export const formatTime = (iso: string | null | undefined): string => (iso ? new Date(iso).toLocaleString() : '–');

type Loose = Record<string, unknown>;
const isObject = (value: unknown): value is Loose => typeof value === 'object' && value !== null && !Array.isArray(value);
const num = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) ? value : undefined);

/** Sizes and start-up of one variant, read defensively: build details are free-form. */
export interface VariantFacts {
  bytes?: number;
  startupMs?: number;
}

export function variantFacts(build: Build, variant: 'original' | 'optimized'): VariantFacts {
  const variants = build.details.variants;
  const reported = isObject(variants) && isObject(variants[variant]) ? variants[variant] : undefined;
  const startup = reported && isObject(reported.startup) ? num(reported.startup.totalMs) : undefined;
  return { bytes: build.artifacts[variant]?.size ?? num(reported?.bytes), startupMs: startup };
}

/**
 * The compiler a build used, when the build record names it (details.compiler
 * or details.toolchain: a string, or an object with a name and a version).
 */
export function compilerOf(build: Build): string | undefined {
  for (const key of ['compiler', 'toolchain']) {
    const value = build.details[key];
    if (typeof value === 'string') return value;
    if (isObject(value)) {
      const words = [value.name, value.compiler, value.version].filter((word): word is string => typeof word === 'string');
      if (words.length > 0) return words.join(' ');
      return JSON.stringify(value).slice(0, 120);
    }
  }
  return undefined;
}
