import { Status } from '../abi.ts';
import type { PluginVm } from '../vm.ts';

/** Writes `data` back the ABI way and turns an allocation failure into a status. */
export function returned(vm: PluginVm, data: Uint8Array, pointerPtr: number, sizePtr: number): number {
  return vm.returnBytes(data, pointerPtr, sizePtr) ? Status.OK : Status.INVALID_MEMORY_ACCESS;
}
