/** Shared data (key-value with compare-and-swap) and shared queues. */
import { i32, u32 } from '../../host-function.ts';
import { Status } from '../abi.ts';
import type { PluginVm } from '../vm.ts';
import type { HostCall } from './index.ts';
import { returned } from './returned.ts';

const text = (vm: PluginVm, pointer: number, size: number): string => vm.memory.readString(pointer, size);

export const sharedCalls: Readonly<Record<string, HostCall>> = {
  proxy_get_shared_data: (vm, [keyPtr, keySize, valuePtrPtr, valueSizePtr, casPtr]) => {
    const entry = vm.shared.get(text(vm, i32(keyPtr), i32(keySize)));
    if (!entry) return Status.NOT_FOUND;
    const status = returned(vm, entry.value, i32(valuePtrPtr), i32(valueSizePtr));
    if (status === Status.OK) vm.memory.writeU32(i32(casPtr), entry.cas);
    return status;
  },
  proxy_set_shared_data: (vm, [keyPtr, keySize, valuePtr, valueSize, cas]) => {
    // A null value pointer with size 0 stores an empty value (the Rust SDK sends that for None).
    const value = vm.memory.read(i32(valuePtr), i32(valueSize));
    return vm.shared.set(text(vm, i32(keyPtr), i32(keySize)), value, u32(cas));
  },
  proxy_register_shared_queue: (vm, [namePtr, nameSize, idPtr]) => {
    const id = vm.queues.register(text(vm, i32(namePtr), i32(nameSize)), vm.rootContextId);
    if (id === undefined) return Status.INTERNAL_FAILURE;
    vm.memory.writeU32(i32(idPtr), id);
    return Status.OK;
  },
  proxy_resolve_shared_queue: (vm, [vmIdPtr, vmIdSize, namePtr, nameSize, idPtr]) => {
    const vmId = text(vm, i32(vmIdPtr), i32(vmIdSize));
    // One VM per plugin here: only our own VM id (or none) can name a queue.
    if (vmId !== '' && vmId !== vm.spec.plugin.vmId) return Status.NOT_FOUND;
    const id = vm.queues.resolve(text(vm, i32(namePtr), i32(nameSize)));
    if (id === undefined) return Status.NOT_FOUND;
    vm.memory.writeU32(i32(idPtr), id);
    return Status.OK;
  },
  proxy_enqueue_shared_queue: (vm, [queueId, valuePtr, valueSize]) => {
    const id = u32(queueId);
    const { status, owner } = vm.queues.enqueue(id, vm.memory.read(i32(valuePtr), i32(valueSize)));
    // proxy_on_queue_ready runs after the current callback returns, never inside it.
    if (owner !== undefined) vm.queueReady.push({ contextId: owner, queueId: id });
    return status;
  },
  proxy_dequeue_shared_queue: (vm, [queueId, valuePtrPtr, valueSizePtr]) => {
    const { status, value } = vm.queues.dequeue(u32(queueId));
    if (value === undefined) return status;
    return returned(vm, value, i32(valuePtrPtr), i32(valueSizePtr));
  },
};
