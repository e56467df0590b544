/**
 * What the test bed links into a module: plain JS functions grouped by import
 * module name. Wasm passes i32/f32/f64 as numbers and i64 as bigints.
 */
import type { FunctionType, ValueType } from './signatures.ts';

export type WasmValue = number | bigint;
export type HostFunction = (...args: WasmValue[]) => WasmValue | WasmValue[] | undefined;

/** Arguments as numbers: every ABI pointer, size and enum is an i32. */
export const i32 = (value: WasmValue | undefined): number => (typeof value === 'bigint' ? Number(BigInt.asIntN(32, value)) : (value ?? 0));
export const u32 = (value: WasmValue | undefined): number => i32(value) >>> 0;
export const i64 = (value: WasmValue | undefined): bigint => (typeof value === 'bigint' ? value : BigInt(value ?? 0));

/**
 * A function returning `status` in whatever result type the import declares
 * (a bigint for i64: returning a number there would throw at call time).
 */
export function stubFor(type: FunctionType, status: number, onCall?: () => void): HostFunction {
  const values = type.results.map((result) => zeroOf(result, status));
  return () => {
    onCall?.();
    if (values.length === 0) return undefined;
    return values.length === 1 ? values[0] : values;
  };
}

function zeroOf(type: ValueType, status: number): WasmValue {
  switch (type) {
    case 'i64':
      return BigInt(status);
    case 'i32':
    case 'f32':
    case 'f64':
      return status;
    default:
      // v128 cannot cross the JS boundary at all and references have no status; V8 rejects the call itself.
      return 0;
  }
}
