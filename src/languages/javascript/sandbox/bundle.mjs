/* global process, console */
// Runs INSIDE the build sandbox (plain JavaScript). Bundles and type-strips
// the entry with esbuild's API (no plugins: nothing from the upload runs),
// and prints each problem as `file:line:col: error: text`, the form Kiln's
// build log reader turns into the build's one-line reason.
//   node bundle.mjs <entry> <outfile>
import { build } from 'esbuild';

const [entry, outfile] = process.argv.slice(2);
if (!entry || !outfile) {
  console.error('usage: bundle.mjs <entry> <outfile>');
  process.exit(2);
}

/** esbuild's columns are 0-based; editors (and clang) count from 1. */
function format(message, level) {
  const location = message.location;
  if (!location) return `${level}: ${message.text}`;
  return `${location.file}:${location.line}:${location.column + 1}: ${level}: ${message.text}\n    ${location.lineText}`;
}

try {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    // No Node or browser built-ins exist in the component; importing one fails here, with its line.
    platform: 'neutral',
    mainFields: ['module', 'main'],
    target: 'es2022',
    outfile,
    logLevel: 'silent',
  });
  for (const warning of result.warnings.slice(0, 20)) console.error(format(warning, 'warning'));
  console.log(`esbuild: bundled ${entry}`);
} catch (error) {
  const errors = Array.isArray(error?.errors) ? error.errors : [];
  for (const message of errors.slice(0, 20)) console.error(format(message, 'error'));
  if (errors.length === 0) console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
