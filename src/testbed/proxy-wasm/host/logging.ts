/** Logging, clocks and timers. */
import { i32, u32 } from '../../host-function.ts';
import { LOG_LEVELS, Status } from '../abi.ts';
import type { HostCall } from './index.ts';

export const loggingCalls: Readonly<Record<string, HostCall>> = {
  proxy_log: (vm, [level, pointer, size]) => {
    const name = LOG_LEVELS[u32(level)];
    if (name === undefined) return Status.BAD_ARGUMENT;
    vm.log(name, vm.memory.readString(i32(pointer), i32(size)));
    return Status.OK;
  },
  proxy_get_log_level: (vm, [resultPtr]) => {
    vm.memory.writeU32(i32(resultPtr), vm.spec.logLevel);
    return Status.OK;
  },
  proxy_get_current_time_nanoseconds: (vm, [resultPtr]) => {
    vm.memory.writeU64(i32(resultPtr), BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)));
    return Status.OK;
  },
  proxy_set_tick_period_milliseconds: (vm, [period]) => {
    // The worker arms (or stops) the timer after the current message.
    vm.tickPeriodMs = u32(period);
    return Status.OK;
  },
};
