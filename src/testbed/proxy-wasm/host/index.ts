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

export function hostImports(vm: PluginVm): Record<string, HostFunction> {
  const calls: Record<string, HostCall> = {
    ...loggingImports(vm),
    ...httpFieldImports(vm),
    ...bufferImports(vm),
    ...propertyImports(vm),
    ...sharedImports(vm),
    ...metricImports(vm),
    ...httpCallImports(vm),
    ...grpcCallImports(vm),
    ...streamImports(vm),
  };
  return Object.fromEntries(Object.entries(calls).map(([name, call]) => [name, guarded(call)]));
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
