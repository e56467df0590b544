import { BubblewrapSandbox } from './bubblewrap.ts';
import type { BubblewrapOptions } from './bubblewrap.ts';
import { GvisorSandbox } from './gvisor.ts';
import type { GvisorOptions } from './gvisor.ts';
import type { Sandbox } from './sandbox.ts';

export type SandboxName = Sandbox['name'];
export type SandboxOptions = BubblewrapOptions & GvisorOptions;

/**
 * The sandbox chosen by configuration (`bubblewrap` is the default: ~15 ms
 * to start fresh, a few ms from a warm pool, vs ~150 ms for gVisor). The
 * services pass `warmPool` (KILN_SANDBOX_WARM_POOL, default DEFAULT_WARM_POOL);
 * without it every run starts fresh and nothing is held between runs.
 */
export function createSandbox(name: SandboxName, options: SandboxOptions = {}): Sandbox {
  switch (name) {
    case 'bubblewrap':
      return new BubblewrapSandbox(options);
    case 'gvisor':
      return new GvisorSandbox(options);
  }
}

export { BubblewrapSandbox, GvisorSandbox };
export type { BubblewrapOptions, GvisorOptions };
export { createWorkDir } from './volume.ts';
export type { WorkDir } from './volume.ts';
export type { SandboxHostOptions } from './host.ts';
export { DEFAULT_LIMITS } from './sandbox.ts';
export { DEFAULT_WARM_POOL } from './warm-pool.ts';
export type { LimitName, Mount, Sandbox, SandboxLimits, SandboxResult, SandboxRunOptions } from './sandbox.ts';
