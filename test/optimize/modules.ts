/**
 * Hand-assembled modules for the optimize tests: small, and with exactly the
 * behaviour a test needs (an init function that traps, debug sections).
 */
import { name, section, uleb, vector } from '../support/wasm.ts';

const UNREACHABLE = 0x00;
const END = 0x0b;

export interface CommandOptions {
  /** Body of `wizer-initialize` (instructions without `end`); omitted: no such export. */
  init?: number[];
  /** Custom sections appended at the end: name → payload. */
  custom?: Record<string, number[]>;
  /** Memory limits: min pages and optional max. */
  memory?: { min: number; max?: number };
}

/** A wasi-command: `_start` (empty), `memory`, optionally `wizer-initialize`. */
export function commandModule(options: CommandOptions = {}): Uint8Array<ArrayBuffer> {
  const functions: Array<{ exportName: string; body: number[] }> = [{ exportName: '_start', body: [] }];
  if (options.init) functions.push({ exportName: 'wizer-initialize', body: options.init });
  const memory = options.memory ?? { min: 1 };
  const limits = memory.max === undefined ? [0x00, ...uleb(memory.min)] : [0x01, ...uleb(memory.min), ...uleb(memory.max)];
  const bytes = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  bytes.push(...section(1, vector([[0x60, 0x00, 0x00]])));
  bytes.push(...section(3, vector(functions.map(() => [0x00]))));
  bytes.push(...section(5, vector([limits])));
  const exports = functions.map((fn, index) => [...name(fn.exportName), 0x00, ...uleb(index)]);
  exports.push([...name('memory'), 0x02, 0x00]);
  bytes.push(...section(7, vector(exports)));
  bytes.push(...section(10, vector(functions.map((fn) => {
    const body = [0x00, ...fn.body, END];
    return [...uleb(body.length), ...body];
  }))));
  for (const [customName, payload] of Object.entries(options.custom ?? {})) bytes.push(...section(0, [...name(customName), ...payload]));
  return new Uint8Array(bytes);
}

/** Traps in its init function: Wizer cannot pre-initialize it. */
export const trappingInitModule = () => commandModule({ init: [UNREACHABLE], custom: { '.debug_info': new Array(200).fill(7), producers: [0] } });
