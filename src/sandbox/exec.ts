import { execFile } from 'node:child_process';
import { PlatformError } from '../errors.ts';

/**
 * Runs a trusted host helper (mount, cp, chown, cc, runsc ...) as the
 * service user. Never used for anything the user controls: sandboxed commands
 * go through supervise.ts.
 */
export interface HostCommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runHost(file: string, args: string[], options: { timeoutMs?: number; input?: string } = {}): Promise<HostCommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          // Not an exit status: the program is missing or could not be started.
          reject(error);
          return;
        }
        resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Like runHost, but a non-zero exit or a missing program is a PlatformError. */
export async function mustRunHost(file: string, args: string[], code: string, what: string, timeoutMs?: number): Promise<string> {
  let result: HostCommandResult;
  try {
    result = await runHost(file, args, { timeoutMs });
  } catch (cause) {
    throw new PlatformError(code, `${what}: cannot run ${file}: ${(cause as Error).message}`, { cause });
  }
  if (result.code !== 0) {
    throw new PlatformError(code, `${what}: ${file} exited with ${result.code}: ${result.stderr.trim().slice(0, 2000)}`);
  }
  return result.stdout;
}
