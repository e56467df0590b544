/**
 * AssemblyScript source Kiln adds to every build as a library file
 * (`--lib`), so `--use abort=~lib/kiln/...` can point at it.
 *
 * Why: by default a failed assertion calls an imported `env.abort`, which
 * neither proxy-wasm hosts nor WASI runtimes provide, so the module would not
 * even instantiate there. Filters log the message through `proxy_log`
 * (level error) and trap; commands write it to stderr and exit with 255.
 *
 * Kept as a string: it is AssemblyScript, not TypeScript, and must not be
 * type-checked with Kiln's own sources.
 */
export const ABORT_LIBRARY_FILE = 'kiln.ts';

export const ABORT_FUNCTIONS = {
  'proxy-wasm': '~lib/kiln/kilnProxyAbort',
  'wasi-command': '~lib/kiln/kilnWasiAbort',
} as const;

export const ABORT_LIBRARY_SOURCE = `// Written by Kiln: abort handlers for hosts without env.abort.
@external("env", "proxy_log")
declare function kiln_proxy_log(level: i32, message: usize, size: usize): i32;

@external("wasi_snapshot_preview1", "fd_write")
declare function kiln_fd_write(fd: u32, iovs: usize, iovsLength: usize, written: usize): u16;

@external("wasi_snapshot_preview1", "proc_exit")
declare function kiln_proc_exit(code: u32): void;

function kilnAbortMessage(message: string | null, fileName: string | null, line: u32, column: u32, suffix: string): ArrayBuffer {
  let text = "abort: " + (message !== null ? message : "(no message)");
  if (fileName !== null) text += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  return String.UTF8.encode(text + suffix);
}

export function kilnProxyAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const bytes = kilnAbortMessage(message, fileName, line, column, "");
  kiln_proxy_log(4, changetype<usize>(bytes), <usize>bytes.byteLength);
  unreachable();
}

export function kilnWasiAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  const bytes = kilnAbortMessage(message, fileName, line, column, "\\n");
  const iov = memory.data(8);
  store<u32>(iov, changetype<usize>(bytes));
  store<u32>(iov, <u32>bytes.byteLength, 4);
  kiln_fd_write(2, iov, 1, memory.data(4));
  kiln_proc_exit(255);
  unreachable();
}
`;
