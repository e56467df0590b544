/**
 * Sizes for people, one way everywhere: build reasons and logs (worker), the
 * CLI and the web UI read the same numbers, so they print them the same.
 * Binary units; one decimal below 10 (dropped when it is .0), none above, so
 * a limit reads "512 MiB" and a module "1.5 MiB". Pure and dependency-free:
 * the web bundle imports it too.
 */
const UNITS = [
  ['GiB', 1024 ** 3],
  ['MiB', 1024 ** 2],
  ['KiB', 1024],
] as const;

export function formatBytes(bytes: number): string {
  for (const [unit, size] of UNITS) {
    if (bytes >= size) return `${roundForDisplay(bytes / size)} ${unit}`;
  }
  return `${bytes} B`;
}

function roundForDisplay(value: number): number {
  return value < 10 ? Number(value.toFixed(1)) : Math.round(value);
}
