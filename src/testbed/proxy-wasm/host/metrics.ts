/** Counters, gauges and histograms. */
import { i32, i64, u32 } from '../../host-function.ts';
import { METRIC_TYPE_NAMES, Status } from '../abi.ts';
import type { HostCall } from './index.ts';

export const metricCalls: Readonly<Record<string, HostCall>> = {
  proxy_define_metric: (vm, [type, namePtr, nameSize, idPtr]) => {
    const typeName = METRIC_TYPE_NAMES[u32(type)];
    if (typeName === undefined) return Status.BAD_ARGUMENT;
    const id = vm.metrics.define(typeName, vm.memory.readString(i32(namePtr), i32(nameSize)));
    if (id === undefined) return Status.INTERNAL_FAILURE;
    vm.memory.writeU32(i32(idPtr), id);
    return Status.OK;
  },
  proxy_increment_metric: (vm, [id, delta]) => vm.metrics.increment(u32(id), BigInt.asIntN(64, i64(delta))),
  proxy_record_metric: (vm, [id, value]) => vm.metrics.record(u32(id), i64(value)),
  proxy_get_metric: (vm, [id, valuePtr]) => {
    const { status, value } = vm.metrics.get(u32(id));
    if (value === undefined) return status;
    vm.memory.writeU64(i32(valuePtr), value);
    return Status.OK;
  },
};
