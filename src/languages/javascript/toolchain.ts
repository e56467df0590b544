/**
 * Where Kiln's JavaScript component toolchain lives (installed by
 * scripts/install-js-toolchain.sh, apart from Kiln's own node_modules) and
 * how it appears inside the build sandbox. Versions are pinned by
 * toolchains/js/package-lock.json; docs/components.md records them.
 */
import { fileURLToPath } from 'node:url';
import { SettingReader, stringSetting, type Env } from '../../config/settings.ts';
import type { Mount } from '../../sandbox/sandbox.ts';
import { SANDBOX_PLATFORM_DIR } from '../../build-kit/paths.ts';

/** Default host prefix: toolchains/js of this checkout. KILN_JS_TOOLCHAIN_DIR overrides it. */
export const DEFAULT_JS_TOOLCHAIN_DIR = fileURLToPath(new URL('../../../toolchains/js/', import.meta.url)).replace(/\/$/, '');
/** Kiln's own scripts that run inside the sandbox (plain .mjs, no tsx there). */
const SANDBOX_SCRIPTS_HOST_DIR = fileURLToPath(new URL('./sandbox/', import.meta.url)).replace(/\/$/, '');

export const SANDBOX_JS_DIR = `${SANDBOX_PLATFORM_DIR}/js`;
export const SANDBOX_JS_MODULES = `${SANDBOX_JS_DIR}/node_modules`;
export const SANDBOX_JS_WIT = `${SANDBOX_JS_DIR}/wit`;
export const SANDBOX_JS_SCRIPTS = `${SANDBOX_JS_DIR}/kiln`;
/** The world in the generated WIT (see the install script). */
export const COMPONENT_WORLD = 'handler';

/** Read by builds (worker) and by the test bed's component runner; a server loads it once (src/config.ts). */
export const JS_TOOLCHAIN_SETTING = stringSetting({
  env: 'KILN_JS_TOOLCHAIN_DIR',
  key: 'toolchains.javascript',
  fallback: DEFAULT_JS_TOOLCHAIN_DIR,
  defaultText: '`toolchains/js` of this checkout',
  description: 'Kiln\'s JS/TS component toolchain (installed by scripts/install-js-toolchain.sh)',
});

/** The toolchain prefix from the variables given (default: none, so the embedded default). */
export function toolchainDir(env: Env = {}): string {
  return new SettingReader(env).read(JS_TOOLCHAIN_SETTING);
}

/**
 * The toolchain's packages, the derived WIT and Kiln's scripts, read-only.
 * Mounted as three siblings so Node resolves the scripts' bare imports
 * (`@bytecodealliance/componentize-js`) from /opt/kiln/js/node_modules.
 */
export function toolchainMounts(prefix: string): Mount[] {
  return [
    { host: `${prefix}/node_modules`, sandbox: SANDBOX_JS_MODULES },
    { host: `${prefix}/wit`, sandbox: SANDBOX_JS_WIT },
    { host: SANDBOX_SCRIPTS_HOST_DIR, sandbox: SANDBOX_JS_SCRIPTS },
  ];
}
