/* global process, console */
// Runs INSIDE the build sandbox (plain JavaScript: node runs it without tsx).
// Builds a wasi:http component from the bundled handler with componentize-js.
//   node componentize.mjs <bundle.js> <wit dir> <world> <out.wasm>
// The toolchain's node_modules are mounted next to this file's directory.
import { writeFile } from 'node:fs/promises';

const [sourcePath, witPath, worldName, outPath] = process.argv.slice(2);
if (!sourcePath || !witPath || !worldName || !outPath) {
  console.error('usage: componentize.mjs <bundle.js> <wit dir> <world> <out.wasm>');
  process.exit(2);
}
// preview2-shim 0.26 gives WASI code no filesystem unless told, and
// componentize's own Wasm tools read the WIT and the source through it.
// Inside the sandbox "/" is the sandbox's root, not the host's.
const { _setPreopens } = await import('@bytecodealliance/preview2-shim/filesystem');
_setPreopens({ '/': '/' });
const { componentize } = await import('@bytecodealliance/componentize-js');
try {
  const { component } = await componentize({ sourcePath, witPath, worldName });
  await writeFile(outPath, component);
  console.log(`componentize-js: wrote a ${component.length}-byte component`);
} catch (error) {
  // The engine's message names the bundled file's line; the bundler already
  // checked syntax against the user's own files.
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
