/**
 * The entry of a worker thread as an eval'd script, for every module that
 * starts worker threads (the test bed's pools, the component runner, the
 * evaluator's inspector).
 *
 * Under tsx (how Kiln runs: bin/kiln) a worker thread does not inherit the
 * TypeScript loader in Node 20, and registering it in each worker costs a
 * loader thread plus a round trip to it for every module the worker
 * imports: hundreds of milliseconds of CPU per worker on a small machine.
 * Workers are started often — a test bed worker stopped at a call's deadline
 * is replaced at once — and that start-up competed with other owners' calls
 * (issue 11, the victim figure). So under tsx each entry's module graph is
 * bundled once per process, with the esbuild that tsx itself runs on, into
 * one CommonJS script the worker evaluates without any loader. When that is
 * not possible the worker registers tsx as before; compiled to JavaScript,
 * workers import the .js entry directly.
 */
import { createRequire } from 'node:module';

interface EsbuildApi {
  buildSync(options: Record<string, unknown>): { outputFiles?: Array<{ text: string }> };
}

/** Bundles by entry URL; undefined: bundling failed once, the loader is registered instead. */
const bundles = new Map<string, string | undefined>();

/** `entry` is relative to `callerUrl` (the caller's import.meta.url) and has no extension, e.g. `./worker`. */
export function threadEntrySource(callerUrl: string, entry: string): string {
  const typescript = callerUrl.endsWith('.ts');
  const target = new URL(`${entry}${typescript ? '.ts' : '.js'}`, callerUrl);
  if (!typescript) return `import(${JSON.stringify(target.href)});`;
  if (!bundles.has(target.href)) bundles.set(target.href, bundle(target));
  const bundled = bundles.get(target.href);
  if (bundled !== undefined) return bundled;
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return `import(${tsx}).then((api) => { api.register(); return import(${JSON.stringify(target.href)}); });`;
}

function bundle(entry: URL): string | undefined {
  try {
    // tsx's own esbuild: present whenever tsx is, which is the only case that needs a bundle.
    const fromTsx = createRequire(import.meta.resolve('tsx'));
    const esbuild = fromTsx('esbuild') as EsbuildApi;
    const result = esbuild.buildSync({ entryPoints: [entry.pathname], bundle: true, format: 'cjs', platform: 'node', target: 'node20', write: false, logLevel: 'silent' });
    const text = result.outputFiles?.[0]?.text;
    if (text === undefined) throw new Error('esbuild produced no output');
    return text;
  } catch {
    // Slower, not wrong: every worker registers the TypeScript loader itself.
    return undefined;
  }
}
