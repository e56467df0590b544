/**
 * Everything the CLI shows goes through here, so that one rule holds for
 * every command: `--json` prints exactly one JSON document on stdout and
 * nothing else there; tables, colours, progress bars and spinners appear only
 * when a human is watching (a TTY), and messages meant for that human go to
 * stderr so they never pollute what a script reads from stdout.
 *
 * No colour or progress library is installed, so the few escape codes we
 * need are written here (NO_COLOR and FORCE_COLOR are honoured).
 */
import type { WriteStream } from 'node:tty';
import { formatBytes } from '../format/bytes.ts';
import { clientEnvironment } from './environment.ts';

/** One size format for the CLI, the web UI and the build logs (src/format/bytes.ts). */
export { formatBytes };

type Stream = NodeJS.WriteStream | WriteStream;

export interface OutputOptions {
  json?: boolean;
}

const isTty = (stream: Stream): boolean => stream.isTTY === true;

function colourWanted(stream: Stream): boolean {
  const env = clientEnvironment();
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return true;
  return isTty(stream) && env.TERM !== 'dumb';
}

export interface Palette {
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
}

function paletteFor(enabled: boolean): Palette {
  const wrap = (open: number, close: number) => (text: string) => (enabled ? `\u001b[${open}m${text}\u001b[${close}m` : text);
  return { bold: wrap(1, 22), dim: wrap(2, 22), red: wrap(31, 39), green: wrap(32, 39), yellow: wrap(33, 39), cyan: wrap(36, 39) };
}

export interface Column<Row> {
  header: string;
  value: (row: Row) => string;
}

export class Output {
  readonly json: boolean;
  /** Colours for stdout and stderr (they can differ: `kiln x | less`). */
  readonly out: Palette;
  readonly err: Palette;

  constructor(
    options: OutputOptions = {},
    readonly stdout: Stream = process.stdout,
    readonly stderr: Stream = process.stderr,
  ) {
    this.json = options.json === true;
    this.out = paletteFor(!this.json && colourWanted(stdout));
    this.err = paletteFor(colourWanted(stderr));
  }

  get stdoutIsTty(): boolean {
    return isTty(this.stdout);
  }

  get stderrIsTty(): boolean {
    return isTty(this.stderr);
  }

  /** The one document a `--json` command prints. */
  printJson(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** Result text for humans (stdout); suppressed in JSON mode. */
  line(text = ''): void {
    if (!this.json) this.stdout.write(`${text}\n`);
  }

  /** Progress and notes for the human at the terminal: always stderr. */
  note(text: string): void {
    this.stderr.write(`${text}\n`);
  }

  warn(text: string): void {
    this.stderr.write(`${this.err.yellow('warning:')} ${text}\n`);
  }

  /**
   * Rows as an aligned table with a header on a TTY; as tab-separated lines
   * without a header otherwise, which `cut` and `awk` read directly.
   */
  table<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): void {
    const cells = rows.map((row) => columns.map((column) => oneLine(column.value(row))));
    if (!this.stdoutIsTty) {
      for (const row of cells) this.stdout.write(`${row.join('\t')}\n`);
      return;
    }
    const widths = columns.map((column, index) => Math.max(column.header.length, ...cells.map((row) => visibleLength(row[index] ?? ''))));
    const pad = (text: string, index: number) => (index === columns.length - 1 ? text : text + ' '.repeat((widths[index] ?? 0) - visibleLength(text)));
    this.stdout.write(`${this.out.bold(columns.map((column, index) => pad(column.header, index)).join('  '))}\n`);
    for (const row of cells) this.stdout.write(`${row.map(pad).join('  ')}\n`);
  }

  /** Relative ("5m ago") for a person, ISO for a pipe. */
  time(iso: string | null | undefined): string {
    return this.stdoutIsTty ? formatTime(iso) : (iso ?? '-');
  }

  /** `label  value` pairs, labels aligned (a "show" command's body). */
  fields(pairs: ReadonlyArray<readonly [string, string]>): void {
    const width = Math.max(0, ...pairs.map(([label]) => label.length));
    for (const [label, value] of pairs) this.line(`${this.out.dim(label.padEnd(width))}  ${value}`);
  }
}

// eslint-disable-next-line no-control-regex -- matching the escape codes we emit is the point
const ANSI = /\u001b\[[0-9;]*m/g;
const visibleLength = (text: string): number => text.replace(ANSI, '').length;
const oneLine = (text: string): string => text.replace(/[\t\r\n]+/g, ' ');

/** A bar redrawn in place on a TTY stderr; silent elsewhere (logs stay readable). */
export class ProgressBar {
  private lastDraw = 0;
  private readonly enabled: boolean;

  constructor(
    private readonly output: Output,
    private readonly label: string,
    private readonly total: number,
  ) {
    this.enabled = output.stderrIsTty;
  }

  update(done: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    // Redrawing on every 64 KiB chunk would cost more than the upload itself.
    if (now - this.lastDraw < 80 && done < this.total) return;
    this.lastDraw = now;
    const ratio = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const width = 24;
    const filled = Math.round(ratio * width);
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    this.output.stderr.write(`\r${this.label} ${bar} ${String(Math.round(ratio * 100)).padStart(3)}%  ${formatBytes(done)} / ${formatBytes(this.total)}\u001b[K`);
  }

  finish(): void {
    if (this.enabled) this.output.stderr.write('\r\u001b[K');
  }
}

/** A one-line spinner on a TTY stderr; a plain note otherwise. */
export class Spinner {
  private timer: NodeJS.Timeout | undefined;
  private frame = 0;

  constructor(private readonly output: Output) {}

  start(text: string): void {
    this.stop();
    if (!this.output.stderrIsTty) {
      this.output.note(text);
      return;
    }
    const frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    const draw = () => this.output.stderr.write(`\r${this.output.err.cyan(frames[this.frame++ % frames.length] ?? '')} ${text}\u001b[K`);
    draw();
    this.timer = setInterval(draw, 100);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.output.stderr.write('\r\u001b[K');
  }
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  // Start-up times are a few milliseconds: keep a decimal there.
  if (ms < 10 && !Number.isInteger(ms)) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** "3 minutes ago" on a TTY is friendlier than ISO; scripts get ISO via --json. */
export function formatTime(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  if (Number.isNaN(seconds)) return iso;
  if (seconds < 60) return `${Math.max(0, seconds)}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h ago`;
  return iso.slice(0, 10);
}
