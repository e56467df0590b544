import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PlatformError } from '../errors.ts';
import { runHost } from './exec.ts';

/**
 * Small C helpers (the seccomp filter generator, the gVisor statx shim) are
 * shipped as source and compiled on first use: Kiln installs from npm and
 * Debian only, so there is no prebuilt binary to ship, and compiling against
 * the host's own libseccomp keeps the syscall tables in step with its kernel.
 */
/** Without a configured one (KILN_SANDBOX_CACHE_DIR, see src/config.ts, which also honours XDG_CACHE_HOME). */
export function defaultCacheDir(): string {
  return join(homedir(), '.cache', 'kiln');
}

export interface NativeBuild {
  /** URL of the C source next to this module. */
  source: URL;
  /** Base name of the output in the cache dir (a content hash is appended). */
  name: string;
  /** Extra compiler arguments after the source, e.g. ['-lseccomp']. */
  flags: string[];
  /** Packages that provide what `flags` need, for the error message. */
  needs: string;
  cacheDir: string;
}

/** The host's C compiler (Debian's `cc`, as scripts/setup.sh installs it). */
const compiler = 'cc';
const inFlight = new Map<string, Promise<string>>();

/** Path of the compiled helper, compiling it once per source and flags. */
export function compileNative(build: NativeBuild): Promise<string> {
  const key = `${build.source.href}\0${build.flags.join(' ')}\0${build.cacheDir}`;
  let pending = inFlight.get(key);
  if (!pending) {
    pending = compile(build);
    // A failure must not stick: the operator may install the package and retry.
    pending.catch(() => inFlight.delete(key));
    inFlight.set(key, pending);
  }
  return pending;
}

async function compile(build: NativeBuild): Promise<string> {
  const source = await readFile(build.source);
  const hash = createHash('sha256').update(source).update(build.flags.join(' ')).update(process.arch).digest('hex').slice(0, 16);
  const output = join(build.cacheDir, `${build.name}-${hash}`);
  if (await exists(output)) return output;
  await mkdir(build.cacheDir, { recursive: true, mode: 0o755 });
  // Compile to a private name and rename: concurrent workers never see half a file.
  const partial = `${output}.${process.pid}.tmp`;
  const args = ['-O2', '-Wall', '-o', partial, fileURLToPath(build.source), ...build.flags];
  let result;
  try {
    result = await runHost(compiler, args, { timeoutMs: 120_000 });
  } catch (cause) {
    throw new PlatformError('sandbox_compiler_missing', `cannot run the C compiler "${compiler}" to build ${build.name}; install ${build.needs}`, { cause });
  }
  if (result.code !== 0) {
    await rm(partial, { force: true });
    throw new PlatformError('sandbox_native_build_failed', `compiling ${build.name} failed (install ${build.needs}): ${result.stderr.trim().slice(0, 1500)}`);
  }
  await rename(partial, output);
  return output;
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}
