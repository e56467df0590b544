// Runs one WASI command for the tests, in a process of its own (see wasi-run.ts):
//   node wasi-child.mjs <module.wasm> <stdin file> <stdout file> <stderr file>
// Prints one line of JSON on its own stdout: {"exitCode":N} or {"trap":"message"}.
/* global WebAssembly */
import { closeSync, openSync, readFileSync } from 'node:fs';
import process from 'node:process';
import { WASI } from 'node:wasi';

const [modulePath, stdinPath, stdoutPath, stderrPath] = process.argv.slice(2);
const fds = { stdin: openSync(stdinPath, 'r'), stdout: openSync(stdoutPath, 'w'), stderr: openSync(stderrPath, 'w') };
let result;
try {
  const wasi = new WASI({ version: 'preview1', args: ['app'], env: {}, ...fds, returnOnExit: true });
  const instance = await WebAssembly.instantiate(await WebAssembly.compile(readFileSync(modulePath)), wasi.getImportObject());
  result = { exitCode: wasi.start(instance) };
} catch (error) {
  result = { trap: error instanceof Error ? error.message : String(error) };
}
for (const fd of Object.values(fds)) closeSync(fd);
process.stdout.write(`${JSON.stringify(result)}\n`);
