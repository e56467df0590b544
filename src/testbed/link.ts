/**
 * Linking a module to the test bed's host functions, in two halves:
 *
 * - planImports (main thread, once per module): decides for every import
 *   whether the host implements it or a stub answers it, and refuses a module
 *   that declares a host function with a different type than the ABI, or
 *   imports something other than a function — with a sentence naming it.
 * - linkImports (worker, per instance): turns the plan, which is plain data
 *   that can be posted to a worker, into the import object.
 *
 * Stubs make real modules instantiate: SDKs import more than a given filter
 * calls (gRPC, foreign functions, WASI file calls from libc). A stub answers
 * UNIMPLEMENTED (12) for the Proxy-Wasm ABI and ENOSYS (52) for WASI — the
 * status each side's callers understand — and the call is reported.
 */
import { unprocessable } from '../errors.ts';
import type { HostFunction } from './host-function.ts';
import { stubFor } from './host-function.ts';
import { formatType, sameType } from './signatures.ts';
import type { FunctionType, ModuleSignatures } from './signatures.ts';

export interface PlannedImport {
  module: string;
  name: string;
  type: FunctionType;
  /** 'host': implemented; otherwise the status the stub returns. */
  binding: 'host' | { stub: number };
}

/**
 * Host functions a kind implements, by import module, with their types. A
 * list holds the types of one function across ABI versions (the first is
 * the current one); the implementation tells them apart by argument count.
 */
export type HostSignatures = Readonly<Record<string, Readonly<Record<string, FunctionType | readonly FunctionType[]>>>>;

export interface StubPolicy {
  /** Import modules whose unknown functions get a stub, and the status it returns. */
  stubbed: Readonly<Record<string, number>>;
  /** Says why another import module is refused, for the error message. */
  describeAllowed: string;
}

export function planImports(signatures: ModuleSignatures, host: HostSignatures, policy: StubPolicy): PlannedImport[] {
  const other = signatures.otherImports[0];
  if (other !== undefined) {
    throw unprocessable('module_not_runnable', `the module imports the ${other.kind} ${other.module}.${other.name}; the test bed provides only functions, so the module must define its own ${other.kind}`);
  }
  return signatures.imports.map((entry) => planOne(entry, host, policy));
}

function planOne(entry: { module: string; name: string; type: FunctionType }, host: HostSignatures, policy: StubPolicy): PlannedImport {
  const accepted = host[entry.module]?.[entry.name];
  if (accepted !== undefined) {
    const types: readonly FunctionType[] = Array.isArray(accepted) ? accepted : [accepted as FunctionType];
    const expected = types[0] as FunctionType;
    if (!types.some((type) => sameType(type, entry.type))) {
      throw unprocessable(
        'module_not_runnable',
        `the module imports ${entry.module}.${entry.name} with type ${formatType(entry.type)}, but the host function has type ${formatType(expected)}; check the declaration (pointers and sizes are 32-bit)`,
      );
    }
    return { ...entry, binding: 'host' };
  }
  const status = policy.stubbed[entry.module];
  if (status === undefined) {
    throw unprocessable('module_not_runnable', `the module imports ${entry.module}.${entry.name}, which the test bed cannot provide: ${policy.describeAllowed}`);
  }
  return { ...entry, binding: { stub: status } };
}

/** Names the plan binds to host functions of `modules` (what an instance needs implemented). */
export function hostNames(plan: readonly PlannedImport[], modules: readonly string[]): string[] {
  return plan.filter((entry) => entry.binding === 'host' && modules.includes(entry.module)).map((entry) => entry.name);
}

/**
 * The import object for one instance. `implementations` holds the host
 * functions per import module; `onStubCall` hears every call of a stub.
 */
export function linkImports(
  plan: readonly PlannedImport[],
  implementations: Readonly<Record<string, Readonly<Record<string, HostFunction>>>>,
  onStubCall: (module: string, name: string) => void,
): WebAssembly.Imports {
  const imports: Record<string, Record<string, HostFunction>> = {};
  for (const entry of plan) {
    const namespace = (imports[entry.module] ??= {});
    const implemented = entry.binding === 'host' ? implementations[entry.module]?.[entry.name] : undefined;
    if (implemented !== undefined) {
      namespace[entry.name] = implemented;
      continue;
    }
    const status = entry.binding === 'host' ? 12 : entry.binding.stub;
    namespace[entry.name] = stubFor(entry.type, status, () => onStubCall(entry.module, entry.name));
  }
  return imports;
}

/**
 * Callbacks a module exports with a type other than the one the host calls
 * them with. A result the host ignores may be anything (a C callback written
 * to return a value where the ABI returns none is harmless); parameters and
 * used results must match.
 */
export function exportProblems(exports: ReadonlyMap<string, FunctionType>, expected: Readonly<Record<string, FunctionType>>): string[] {
  const problems: string[] = [];
  for (const [name, type] of exports) {
    const wanted = expected[name];
    if (wanted === undefined) continue;
    const compatible = wanted.results.length === 0 ? sameType({ params: wanted.params, results: [] }, { params: type.params, results: [] }) : sameType(wanted, type);
    if (!compatible) problems.push(`it exports ${name} with type ${formatType(type)}, but the host calls it as ${formatType(wanted)}`);
  }
  return problems;
}
