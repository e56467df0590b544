/**
 * The source a test bed worker thread starts from.
 *
 * Under tsx (how Kiln runs: bin/kiln) a worker thread does not inherit the
 * TypeScript loader in Node 20, and registering it in each worker costs a
 * loader thread plus a round trip to it for every module the worker
 * imports: hundreds of milliseconds of CPU per worker on a small machine.
 * Workers are started often — a worker stopped at a call's deadline is
 * replaced at once — and that start-up competed with other owners' calls
 * (issue 11, the victim figure). So under tsx the worker's module graph is
 * bundled once per process, with the esbuild that tsx itself runs on, into
 * one CommonJS script each worker evaluates without any loader. When that is
 * not possible the worker registers tsx as before; compiled to JavaScript,
 * workers import worker.js directly.
 */
import { createRequire } from 'node:module';

interface EsbuildApi {
  buildSync(options: Record<string, unknown>): { outputFiles?: Array<{ text: string }> };
}

let bundled: string | undefined;
let bundleFailed = false;

/** Source for `new Worker(source, { eval: true })`. */
export function workerSource(): string {
  const typescript = import.meta.url.endsWith('.ts');
  const target = new URL(typescript ? './worker.ts' : './worker.js', import.meta.url);
  if (!typescript) return `import(${JSON.stringify(target.href)});`;
  bundled ??= bundleWorker(target);
  if (bundled !== undefined) return bundled;
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return `import(${tsx}).then((api) => { api.register(); return import(${JSON.stringify(target.href)}); });`;
}

function bundleWorker(entry: URL): string | undefined {
  if (bundleFailed) return undefined;
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
    bundleFailed = true;
    return undefined;
  }
}
