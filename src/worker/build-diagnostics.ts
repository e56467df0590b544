/**
 * What a failed build says in one line: the limit it hit, in the units the
 * operator set it in, or the first line of the tools' output that looks
 * like a compiler error. Memory stays bounded whatever the output size.
 */
import { formatBytes } from '../format/bytes.ts';
import type { LimitName, SandboxLimits } from '../sandbox/sandbox.ts';

export function limitReason(limit: LimitName, limits: SandboxLimits): string {
  switch (limit) {
    case 'memory':
      return `memory limit of ${formatBytes(limits.memoryBytes)} exceeded`;
    case 'wall':
      return `time limit of ${formatDuration(limits.wallMs)} exceeded`;
    case 'pids':
      return `process limit of ${limits.pids} exceeded`;
    case 'disk':
      return `disk limit of ${formatBytes(limits.diskBytes)} exceeded`;
    case 'log':
      return `log limit of ${formatBytes(limits.logBytes)} exceeded`;
  }
}

export function formatDuration(ms: number): string {
  if (ms >= 60_000) return `${Number((ms / 60_000).toFixed(1))} min`;
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/**
 * Finds the first line that looks like a compiler error in streamed output:
 * rustc/cargo (`error[E0308]: …`, followed by ` --> file:line:col`), clang
 * and wasm-ld (`file.c:3:5: error: …`, `wasm-ld: error: …`), asc
 * (`ERROR TS2304: …`). Memory stays bounded whatever the output size.
 */
export class ErrorLineFinder {
  private partial = '';
  private found: string | undefined;
  private awaitingLocation = false;
  private static readonly MAX_LINE = 300;

  push(chunk: Buffer): void {
    if (this.found !== undefined && !this.awaitingLocation) return;
    const lines = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = (lines.pop() ?? '').slice(0, 4096);
    for (const line of lines) {
      this.consider(line);
      if (this.found !== undefined && !this.awaitingLocation) return;
    }
  }

  finish(): string | undefined {
    if (this.partial !== '') this.consider(this.partial);
    this.partial = '';
    return this.found;
  }

  private consider(rawLine: string): void {
    // eslint-disable-next-line no-control-regex -- ANSI colour codes are control characters by definition
    const line = rawLine.replace(/\u001b\[[0-9;]*[A-Za-z]/g, '').trimEnd();
    if (this.awaitingLocation) {
      this.awaitingLocation = false;
      const location = /^\s*--> (.+)$/.exec(line);
      if (location?.[1] !== undefined) this.found = truncate(`${this.found ?? ''} (${location[1]})`, ErrorLineFinder.MAX_LINE);
      return;
    }
    if (this.found !== undefined) return;
    if (/^error(\[E\d+\])?: /.test(line)) {
      this.found = truncate(line, ErrorLineFinder.MAX_LINE);
      this.awaitingLocation = true;
    } else if (/\b(fatal )?error: /.test(line) || /^ERROR (TS|AS)\d+: /.test(line)) {
      this.found = truncate(line.trim(), ErrorLineFinder.MAX_LINE);
    }
  }
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
