/** proxy_get_property and proxy_set_property. */
import { i32 } from '../../host-function.ts';
import { Status } from '../abi.ts';
import { getProperty, isBuiltIn, parsePath } from '../properties.ts';
import type { HostCall } from './index.ts';
import { returned } from './returned.ts';

/** Bounds on what a filter can store in properties (per stream, and on the root context). */
const MAX_PROPERTIES = 256;
const MAX_PROPERTY_BYTES = 64 * 1024;

export const propertyCalls: Readonly<Record<string, HostCall>> = {
  proxy_get_property: (vm, [pathPtr, pathSize, valuePtrPtr, valueSizePtr]) => {
    const path = parsePath(vm.memory.read(i32(pathPtr), i32(pathSize)));
    const value = getProperty(vm, vm.effectiveStream(), path);
    if (value === undefined) return Status.NOT_FOUND;
    return returned(vm, value, i32(valuePtrPtr), i32(valueSizePtr));
  },
  proxy_set_property: (vm, [pathPtr, pathSize, valuePtr, valueSize]) => {
    const path = parsePath(vm.memory.read(i32(pathPtr), i32(pathSize)));
    if (path.length === 0) return Status.BAD_ARGUMENT;
    if (isBuiltIn(path)) {
      vm.recorder.note(`proxy_set_property(${path.join('.')}) refused: built-in properties are read-only`);
      return Status.BAD_ARGUMENT;
    }
    if (i32(valueSize) >>> 0 > MAX_PROPERTY_BYTES) return Status.BAD_ARGUMENT;
    const value = vm.memory.read(i32(valuePtr), i32(valueSize));
    // Set on a stream, a property lives as long as the request; on the root context, as long as the plugin.
    const target = vm.effectiveStream()?.properties ?? vm.rootProperties;
    if (target.size >= MAX_PROPERTIES && !target.has(path.join('\0'))) return Status.INTERNAL_FAILURE;
    target.set(path.join('\0'), value);
    return Status.OK;
  },
};
