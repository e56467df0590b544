/**
 * CPU time per process and thread from /proc (Linux): where the CPU of a
 * benchmark's work goes, measured around it. A process's main thread has the
 * process id as its thread id; every other thread (worker threads, the load
 * generator's thread, V8's GC helpers, libuv's pool) is counted under
 * "other threads". Elsewhere, or if /proc cannot be read, it reports nothing.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/…/stat's utime and stime (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

export interface ProcessCpu {
  label: string;
  pid: number;
  /** CPU seconds (user + system) of the main thread. */
  mainSeconds: number;
  /** CPU seconds of all other threads together. */
  otherSeconds: number;
}

function threadSeconds(pid: number, tid: string): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
  // The command name is in parentheses and may hold spaces: fields are counted after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

function sample(label: string, pid: number): ProcessCpu | undefined {
  try {
    let mainSeconds = 0;
    let otherSeconds = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const seconds = threadSeconds(pid, tid);
        if (Number(tid) === pid) mainSeconds = seconds;
        else otherSeconds += seconds;
      } catch {
        // The thread ended between the listing and the read: its time is gone with it.
      }
    }
    return { label, pid, mainSeconds, otherSeconds };
  } catch {
    return undefined;
  }
}

/** Samples now; call the result to get what each process used since. */
export function startCpuSample(processes: ReadonlyArray<{ label: string; pid: number }>): () => ProcessCpu[] {
  const before = processes.map(({ label, pid }) => sample(label, pid));
  return () =>
    processes.flatMap(({ label, pid }, index) => {
      const start = before[index];
      const end = sample(label, pid);
      if (!start || !end) return [];
      return [{ label, pid, mainSeconds: end.mainSeconds - start.mainSeconds, otherSeconds: Math.max(0, end.otherSeconds - start.otherSeconds) }];
    });
}

/** One line per process: µs of CPU per unit of work, main thread and the others. */
export function describeCpuPerUnit(used: readonly ProcessCpu[], units: number, unit: string): string[] {
  if (used.length === 0 || units <= 0) return [];
  const perUnit = (seconds: number) => ((seconds * 1e6) / units).toFixed(0).padStart(5);
  const lines = used.map((entry) => `    ${entry.label.padEnd(34)} main thread ${perUnit(entry.mainSeconds)} µs, other threads ${perUnit(entry.otherSeconds)} µs per ${unit}`);
  const total = used.reduce((sum, entry) => sum + entry.mainSeconds + entry.otherSeconds, 0);
  lines.push(`    ${'all of them'.padEnd(34)} ${perUnit(total)} µs of CPU per ${unit} (resolution ${1000 / TICKS_PER_SECOND} ms per thread over the run)`);
  return lines;
}
