import { BubblewrapSandbox } from './bubblewrap.ts';
import type { BubblewrapOptions } from './bubblewrap.ts';
import { GvisorSandbox } from './gvisor.ts';
import type { GvisorOptions } from './gvisor.ts';
import type { Sandbox } from './sandbox.ts';
import { DEFAULT_WARM_POOL } from './warm-pool.ts';

export type SandboxName = Sandbox['name'];
export type SandboxOptions = BubblewrapOptions & GvisorOptions;

/**
 * The sandbox chosen by configuration (`bubblewrap` is the default: a few ms
 * to start from its warm pool of DEFAULT_WARM_POOL prepared sandboxes, vs ~150 ms for gVisor).
 */
export function createSandbox(name: SandboxName, options: SandboxOptions = {}): Sandbox {
  switch (name) {
    case 'bubblewrap':
      return new BubblewrapSandbox({ warmPool: DEFAULT_WARM_POOL, ...options });
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
