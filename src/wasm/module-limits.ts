/**
 * Bounds on what a module makes the engine allocate before any of its code
 * runs, and on what it can grow afterwards besides memory: its tables.
 *
 * Memory has its cap (memory-cap.ts); tables get the same treatment here: a
 * defined table without a maximum, or with one above `maxTableEntries`, is
 * given that maximum in the binary before compilation, so `table.grow` of a
 * funcref or externref table fails (returns -1) at the cap inside the engine
 * instead of growing V8's heap by millions of entries. A table whose initial
 * size already exceeds the cap cannot run at all.
 *
 * The other counts (functions, globals, segments, types) are bounded by the
 * module's size already, but far less tightly than the time and memory V8
 * spends on them at compile and instantiation time; they get named limits
 * well above what real toolchains produce.
 */
import { UserError } from '../errors.ts';
import { concat, encodeLimits, encodeSection, encodeULEB } from './binary.ts';
import type { Limits } from './binary.ts';
import type { ModuleScan, SectionCounts, TableLocation } from './inspect.ts';
import { scanModule } from './inspect.ts';

export interface ModuleShapeLimits {
  /** Tables, imported and defined together. */
  maxTables: number;
  /** Entries per table: the maximum every defined table is given. */
  maxTableEntries: number;
  maxTypes: number;
  maxFunctions: number;
  maxGlobals: number;
  maxElementSegments: number;
  maxDataSegments: number;
}

export const DEFAULT_MODULE_SHAPE_LIMITS: Readonly<ModuleShapeLimits> = {
  maxTables: 16,
  maxTableEntries: 100_000,
  maxTypes: 50_000,
  maxFunctions: 200_000,
  maxGlobals: 10_000,
  maxElementSegments: 10_000,
  maxDataSegments: 50_000,
};

/** A module beyond one of the shape limits: the user's module, a 422 naming the limit. */
export class ModuleLimitError extends UserError {
  constructor(
    readonly limit: keyof ModuleShapeLimits,
    readonly max: number,
    what: string,
  ) {
    super('unprocessable', 'module_limit', `${what}; the test bed allows at most ${max} (limit ${limit})`);
    this.name = 'ModuleLimitError';
  }
}

const COUNT_LIMITS: ReadonlyArray<[keyof SectionCounts, keyof ModuleShapeLimits, string]> = [
  ['types', 'maxTypes', 'function types'],
  ['functions', 'maxFunctions', 'functions'],
  ['globals', 'maxGlobals', 'globals'],
  ['elementSegments', 'maxElementSegments', 'element segments'],
  ['dataSegments', 'maxDataSegments', 'data segments'],
];

/**
 * Returns the module with every defined table's maximum at most
 * `limits.maxTableEntries` (a new array, never the input), after checking
 * the counts. Throws ModuleLimitError for a module beyond a limit and
 * InvalidModuleError for a malformed one.
 */
export function limitModuleShape(bytes: Uint8Array, limits: ModuleShapeLimits): Uint8Array<ArrayBuffer> {
  const scan = scanModule(bytes);
  checkCounts(scan, limits);
  const defined = scan.tables.filter((table) => !table.imported);
  const capped = defined.map((table) => capTable(table, limits.maxTableEntries));
  const first = defined[0];
  if (first === undefined || capped.every((limitsAfter, i) => limitsAfter.max === defined[i]?.limits.max)) return new Uint8Array(bytes);
  return replaceTableSection(bytes, first.section, defined, capped);
}

function checkCounts(scan: ModuleScan, limits: ModuleShapeLimits): void {
  if (scan.tables.length > limits.maxTables) throw new ModuleLimitError('maxTables', limits.maxTables, `the module has ${scan.tables.length} tables`);
  for (const [count, limit, what] of COUNT_LIMITS) {
    const value = scan.counts[count];
    if (value > limits[limit]) throw new ModuleLimitError(limit, limits[limit], `the module has ${value} ${what}`);
  }
}

function capTable(table: TableLocation, maxEntries: number): Limits {
  if (table.limits.min > maxEntries) {
    throw new ModuleLimitError('maxTableEntries', maxEntries, `a table of the module starts with ${table.limits.min} entries`);
  }
  return { ...table.limits, max: Math.min(table.limits.max ?? maxEntries, maxEntries) };
}

/**
 * The table section holds nothing but table types (element type + limits),
 * so it is re-encoded whole; its size prefix is re-encoded too, as it may
 * change length.
 */
function replaceTableSection(bytes: Uint8Array, section: TableLocation['section'], tables: TableLocation[], limits: Limits[]): Uint8Array<ArrayBuffer> {
  const entries = tables.map((table, i) => concat([Uint8Array.of(table.refType), encodeLimits(limits[i] ?? table.limits)]));
  const content = concat([encodeULEB(tables.length), ...entries]);
  return concat([bytes.subarray(0, section.start), encodeSection(section.id, content), bytes.subarray(section.end)]);
}
