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
}

export interface RecorderLimits {
  maxLogEntries: number;
  maxLogMessageBytes: number;
  maxNotes: number;
}

export const DEFAULT_RECORDER_LIMITS: RecorderLimits = { maxLogEntries: 1000, maxLogMessageBytes: 4096, maxNotes: 100 };

export class Recorder {
  private current: Recording = emptyRecording();
  private droppedLogs = 0;
  private readonly seenStubs = new Set<string>();

  constructor(private readonly limits: RecorderLimits = DEFAULT_RECORDER_LIMITS) {}

  log(level: LogLevelName, message: string, contextId: number): void {
    if (this.current.logs.length >= this.limits.maxLogEntries) {
      this.droppedLogs++;
      return;
    }
    const text = message.length > this.limits.maxLogMessageBytes ? `${message.slice(0, this.limits.maxLogMessageBytes)}… (truncated)` : message;
    this.current.logs.push({ level, message: text, contextId });
  }

  callback(timing: CallbackTiming): void {
    // Bounded like logs: a filter cannot make the host call it unboundedly within one message, but be safe.
    if (this.current.callbacks.length < this.limits.maxLogEntries) this.current.callbacks.push(timing);
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
    if (this.droppedLogs > 0) this.current.notes.push(`${this.droppedLogs} log line(s) dropped: at most ${this.limits.maxLogEntries} are kept per step`);
    const taken = this.current;
    this.current = emptyRecording();
    this.droppedLogs = 0;
    return taken;
  }
}

export function emptyRecording(): Recording {
  return { logs: [], callbacks: [], unimplemented: [], notes: [] };
}

export function mergeRecordings(into: Recording, from: Recording): void {
  into.logs.push(...from.logs);
  into.callbacks.push(...from.callbacks);
  for (const name of from.unimplemented) if (!into.unimplemented.includes(name)) into.unimplemented.push(name);
  for (const note of from.notes) if (!into.notes.includes(note)) into.notes.push(note);
}
