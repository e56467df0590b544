/**
 * Fixed paths inside the sandbox, shared by every language so the build
 * logs always look the same. The job directory is mounted at /build.
 */
export const SANDBOX_BUILD_DIR = '/build';
export const SANDBOX_SOURCE_DIR = '/build/src';
/** Where C and AssemblyScript builds write their module (relative: `out/app.wasm`). */
export const OUTPUT_RELATIVE_PATH = 'out/app.wasm';
export const SANDBOX_OUTPUT_PATH = `${SANDBOX_BUILD_DIR}/${OUTPUT_RELATIVE_PATH}`;
/** Files Kiln writes for the build (configs, helper sources); never part of the upload. */
export const KILN_DIR = 'kiln';
export const SANDBOX_KILN_DIR = `${SANDBOX_BUILD_DIR}/${KILN_DIR}`;
/** Scratch space for compilers (clang and rustc write temporary objects). */
export const SANDBOX_TMP_DIR = `${SANDBOX_BUILD_DIR}/tmp`;
/** Prefix for read-only platform mounts that do not live under /usr. */
export const SANDBOX_PLATFORM_DIR = '/opt/kiln';
/** Environment every step starts from: the sandbox inherits nothing. */
export const BASE_ENV: Readonly<Record<string, string>> = {
  PATH: '/usr/bin:/bin',
  HOME: `${SANDBOX_BUILD_DIR}/home`,
  TMPDIR: SANDBOX_TMP_DIR,
  LANG: 'C.UTF-8',
};
/** Directories under the job dir that BASE_ENV refers to. */
export const BASE_DIRECTORIES = ['home', 'tmp', 'out', KILN_DIR] as const;
