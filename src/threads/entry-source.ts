/**
 * The entry of a worker thread as an eval'd script. Under tsx (how Kiln runs:
 * bin/kiln) worker threads do not inherit the TypeScript loader in Node 20,
 * so the script registers it before importing the entry; compiled to
 * JavaScript, it imports the .js file directly. Shared by every module that
 * starts worker threads (the evaluator's inspector, the test bed's pools).
 */

/** `entry` is relative to `callerUrl` (the caller's import.meta.url) and has no extension, e.g. `./worker`. */
export function threadEntrySource(callerUrl: string, entry: string): string {
  const typescript = callerUrl.endsWith('.ts');
  const target = JSON.stringify(new URL(`${entry}${typescript ? '.ts' : '.js'}`, callerUrl).href);
  if (!typescript) return `import(${target});`;
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  return `import(${tsx}).then((api) => { api.register(); return import(${target}); });`;
}
