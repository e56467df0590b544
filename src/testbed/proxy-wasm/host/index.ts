/**
 * The `env` host functions of Proxy-Wasm ABI 0.2.1, one file per area. Each
 * returns a status; a pointer outside the guest's memory becomes
 * INVALID_MEMORY_ACCESS instead of an exception in the host.
 */
import { MemoryFault } from '../../guest-memory.ts';
import type { HostFunction, WasmValue } from '../../host-function.ts';
import { Status } from '../abi.ts';
import type { PluginVm } from '../vm.ts';
import { bufferImports } from './buffers.ts';
import { grpcCallImports } from './grpc-calls.ts';
import { httpCallImports } from './http-calls.ts';
import { httpFieldImports } from './http-fields.ts';
import { loggingImports } from './logging.ts';
import { metricImports } from './metrics.ts';
import { propertyImports } from './properties.ts';
import { sharedImports } from './shared.ts';
import { streamImports } from './streams.ts';

export type HostCall = (args: WasmValue[]) => number;

/**
 * The host functions named in `names` (the ones the module imports), each
 * bound to `vm`. Only those are wrapped: a VM is made per request when a
 * version asks for a fresh instance, and wrapping all ~70 cost more than
 * instantiating the module.
 */
export function hostImports(vm: PluginVm, names: Iterable<string>): Record<string, HostFunction> {
  const areas = [
    loggingImports(vm),
    httpFieldImports(vm),
    bufferImports(vm),
    propertyImports(vm),
    sharedImports(vm),
    metricImports(vm),
    httpCallImports(vm),
    grpcCallImports(vm),
    streamImports(vm),
  ];
  const bound: Record<string, HostFunction> = {};
  for (const name of names) {
    const call = areas.find((area) => Object.hasOwn(area, name))?.[name];
    if (call) bound[name] = guarded(call);
  }
  return bound;
}

function guarded(call: HostCall): HostFunction {
  return (...args) => {
    try {
      return call(args);
    } catch (error) {
      if (error instanceof MemoryFault) return Status.INVALID_MEMORY_ACCESS;
      throw error;
    }
  };
}

/** Writes `data` back the ABI way and turns an allocation failure into a status. */
export function returned(vm: PluginVm, data: Uint8Array, pointerPtr: number, sizePtr: number): number {
  return vm.returnBytes(data, pointerPtr, sizePtr) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
}
