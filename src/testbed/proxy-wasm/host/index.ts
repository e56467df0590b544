/**
 * The `env` host functions of Proxy-Wasm ABI 0.2.1, one file per area. Each
 * returns a status; a pointer outside the guest's memory becomes
 * INVALID_MEMORY_ACCESS instead of an exception in the host.
 */
import { MemoryFault } from '../../guest-memory.ts';
import type { HostFunction, WasmValue } from '../../host-function.ts';
import { Status } from '../abi.ts';
import type { PluginVm } from '../vm.ts';
import { bufferCalls } from './buffers.ts';
import { grpcCalls } from './grpc-calls.ts';
import { httpCalls } from './http-calls.ts';
import { httpFieldCalls } from './http-fields.ts';
import { loggingCalls } from './logging.ts';
import { metricCalls } from './metrics.ts';
import { propertyCalls } from './properties.ts';
import { sharedCalls } from './shared.ts';
import { streamCalls } from './streams.ts';

/** One host function: the VM it serves and the arguments the guest passed. */
export type HostCall = (vm: PluginVm, args: WasmValue[]) => number;

/**
 * Every host function by name, built once per thread. A VM binds only the
 * ones its module imports: a VM is made per request when a version asks for
 * a fresh instance, and making a closure for each of these per VM cost more
 * than instantiating the module (decision 0049).
 */
const HOST_CALLS: ReadonlyMap<string, HostCall> = new Map(
  [loggingCalls, httpFieldCalls, bufferCalls, propertyCalls, sharedCalls, metricCalls, httpCalls, grpcCalls, streamCalls].flatMap((area) => Object.entries(area)),
);

/** The host functions named in `names` (the ones the module imports), each bound to `vm`. */
export function hostImports(vm: PluginVm, names: Iterable<string>): Record<string, HostFunction> {
  const bound: Record<string, HostFunction> = {};
  for (const name of names) {
    const call = HOST_CALLS.get(name);
    if (call) bound[name] = guarded(vm, call);
  }
  return bound;
}

function guarded(vm: PluginVm, call: HostCall): HostFunction {
  return (...args) => {
    try {
      return call(vm, args);
    } catch (error) {
      if (error instanceof MemoryFault) return Status.INVALID_MEMORY_ACCESS;
      throw error;
    }
  };
}
