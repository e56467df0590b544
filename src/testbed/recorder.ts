/**
 * What a filter did during one message to the worker: its log lines, the
 * callbacks the host made with their durations, calls to stubbed imports and
 * the host's own notes. The worker hands the recording back with every
 * answer and starts a new one, so nothing grows without bound; a filter
 * that floods the log loses lines past the caps (and is told so).
 */
import type { LogLevelName } from './proxy-wasm/abi.ts';

export interface LogEntry {
  level: LogLevelName;
  message: string;
  contextId: number;
}

export interface CallbackTiming {
  name: string;
  contextId: number;
  durationMs: number;
  /** The callback's return value, when it has one (an action, a bool). */
  returned?: number;
}

export interface Recording {
  logs: LogEntry[];
  callbacks: CallbackTiming[];
  /** Imports answered by a stub, as module.name, once each. */
  unimplemented: string[];
  /** Things the host wants the user to know (a refused call, dropped log lines). */
  notes: string[];
  /** Names of the test bed limits the filter ran into (TestbedConfig fields), once each. */
  limits: string[];
}

export interface RecorderLimits {
  /** Log lines kept (per step in the worker, per call when merged). */
  maxLogLines: number;
  /** Characters of log messages kept in total. */
  maxLogBytes: number;
  maxLogMessageBytes: number;
  maxNotes: number;
}

export const DEFAULT_RECORDER_LIMITS: RecorderLimits = { maxLogLines: 1000, maxLogBytes: 256 * 1024, maxLogMessageBytes: 4096, maxNotes: 100 };

export class Recorder {
  private current: Recording = emptyRecording();
  private droppedLogs = 0;
  private logBytes = 0;
  private readonly seenStubs = new Set<string>();

  constructor(private readonly limits: RecorderLimits = DEFAULT_RECORDER_LIMITS) {}

  log(level: LogLevelName, message: string, contextId: number): void {
    const text = message.length > this.limits.maxLogMessageBytes ? `${message.slice(0, this.limits.maxLogMessageBytes)}… (truncated)` : message;
    if (this.current.logs.length >= this.limits.maxLogLines || this.logBytes + text.length > this.limits.maxLogBytes) {
      this.droppedLogs++;
      return;
    }
    this.logBytes += text.length;
    this.current.logs.push({ level, message: text, contextId });
  }

  /** A limit refused something the filter asked for: named in the result, explained in a note. */
  limit(name: string, note: string): void {
    if (!this.current.limits.includes(name)) this.current.limits.push(name);
    this.note(`${note} (limit ${name})`);
  }

  callback(timing: CallbackTiming): void {
    // Bounded like logs: a filter cannot make the host call it unboundedly within one message, but be safe.
    if (this.current.callbacks.length < this.limits.maxLogLines) this.current.callbacks.push(timing);
  }

  stub(module: string, name: string): void {
    const what = `${module}.${name}`;
    if (this.seenStubs.has(what)) return;
    this.seenStubs.add(what);
    this.current.unimplemented.push(what);
  }

  note(text: string): void {
    if (this.current.notes.length < this.limits.maxNotes && !this.current.notes.includes(text)) this.current.notes.push(text);
  }

  /** Everything recorded since the last take. */
  take(): Recording {
    if (this.droppedLogs > 0) droppedLines(this.current, this.droppedLogs, this.limits);
    const taken = this.current;
    this.current = emptyRecording();
    this.droppedLogs = 0;
    this.logBytes = 0;
    return taken;
  }
}

function droppedLines(recording: Recording, count: number, limits: RecorderLimits): void {
  for (const name of ['maxLogLines', 'maxLogBytes']) if (!recording.limits.includes(name)) recording.limits.push(name);
  const note = `log lines dropped: at most ${limits.maxLogLines} lines and ${limits.maxLogBytes} bytes of log are kept (limits maxLogLines, maxLogBytes)`;
  if (!recording.notes.includes(note)) recording.notes.push(note);
  recording.notes.push(`${count} log line(s) dropped`);
}

export function emptyRecording(): Recording {
  return { logs: [], callbacks: [], unimplemented: [], notes: [], limits: [] };
}

/**
 * Appends one step's recording to an exchange's, within the same limits per
 * exchange as per step: a filter that logs the maximum in each of many steps
 * (HTTP call rounds, ticks) still produces a bounded result.
 */
export function mergeRecordings(into: Recording, from: Recording, limits: RecorderLimits = DEFAULT_RECORDER_LIMITS): void {
  let bytes = into.logs.reduce((n, entry) => n + entry.message.length, 0);
  let dropped = 0;
  for (const entry of from.logs) {
    if (into.logs.length >= limits.maxLogLines || bytes + entry.message.length > limits.maxLogBytes) {
      dropped++;
      continue;
    }
    bytes += entry.message.length;
    into.logs.push(entry);
  }
  const room = Math.max(0, limits.maxLogLines - into.callbacks.length);
  into.callbacks.push(...from.callbacks.slice(0, room));
  for (const name of from.unimplemented) if (!into.unimplemented.includes(name)) into.unimplemented.push(name);
  for (const name of from.limits) if (!into.limits.includes(name)) into.limits.push(name);
  for (const note of from.notes) if (into.notes.length < limits.maxNotes && !into.notes.includes(note)) into.notes.push(note);
  if (dropped > 0) droppedLines(into, dropped, limits);
}
