import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Import zones: which parts of src/ each part may import (docs/ARCHITECTURE.md,
 * "Zones", and decision 0025). A part is a folder under src/ or a file at its
 * top. Anything not listed is refused by `no-restricted-imports`, so an import
 * against the drawing fails the lint. Read bottom-up: leaves first, the build
 * path, then the API side, then what assembles everything. No part may import
 * one that (directly or not) imports it: test/lint/zones.test.ts checks the
 * folder graph has no cycles.
 */
const BUILD_PATH = ['worker', 'sandbox', 'languages', 'archive', 'wasm', 'build-cache', 'build-kit', 'fetch', 'optimize'];
export const ZONES = {
  // Leaves.
  'errors.ts': [],
  format: [],
  // Setting declarations and readers; each section (test bed, fetch, toolchains) declares its settings beside its code.
  config: ['errors.ts'],
  threads: [],
  // The one HTTP client of the CLI, the worker and edge sync.
  transport: [],
  'build-kit': ['errors.ts'],
  archive: ['errors.ts'],
  sandbox: ['errors.ts'],
  wasm: ['errors.ts'],
  // The build records keep the worker protocol's types (outcome, stages, optimize options).
  store: ['worker/protocol.ts', 'errors.ts'],
  edge: ['errors.ts', 'format', 'transport'],
  // The build path: never the API, server, store, queue, evaluator, test bed or edge.
  'build-cache': ['build-kit', 'format', 'sandbox', 'errors.ts'],
  fetch: ['build-cache', 'build-kit', 'config', 'format', 'sandbox', 'errors.ts'],
  optimize: ['build-kit', 'format', 'sandbox', 'wasm', 'errors.ts'],
  languages: ['build-cache', 'build-kit', 'config', 'fetch', 'format', 'sandbox', 'wasm', 'errors.ts'],
  worker: ['archive', 'build-cache', 'build-kit', 'fetch', 'format', 'languages', 'optimize', 'sandbox', 'transport', 'wasm', 'config.ts', 'errors.ts'],
  // The API side.
  // The one loader: reads every section's declarations, so no section may import it back.
  'config.ts': ['archive', 'build-cache', 'config', 'edge', 'fetch', 'languages', 'optimize', 'queue', 'sandbox', 'store', 'testbed', 'wasm', 'errors.ts'],
  // What the API does, one module per operation, free of HTTP.
  'use-cases': ['archive', 'build-cache', 'edge', 'evaluator', 'queue', 'store', 'testbed', 'wasm', 'worker/protocol.ts', 'config.ts', 'errors.ts'],
  queue: ['store', 'worker/protocol.ts', 'errors.ts'],
  evaluator: ['queue', 'store', 'threads', 'wasm', 'worker/protocol.ts', 'errors.ts'],
  operations: ['store', 'config.ts', 'errors.ts'],
  testbed: ['config', 'languages', 'threads', 'wasm', 'format', 'errors.ts'],
  api: ['archive', 'build-cache', 'edge', 'evaluator', 'optimize', 'queue', 'store', 'testbed', 'use-cases', 'wasm', 'format', 'languages/ids.ts', 'worker/protocol.ts', 'config.ts', 'errors.ts'],
  // What assembles everything, `kiln serve` (server) and the CLI, are filled in below: they may import every other part.
  server: [],
  cli: [],
};
const allBut = (...excluded) => Object.keys(ZONES).filter((part) => !excluded.includes(part));
// Nothing imports the CLI; the server imports everything else.
ZONES.server = allBut('server', 'cli');
ZONES.cli = allBut('cli');
export { BUILD_PATH };

/** The deepest files under src/ are three folders down; one more for headroom (test/lint/zones.test.ts checks no file is deeper). */
export const MAX_DEPTH = 4;
const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The import strings from a file `depth` folders below src/ that reach `part` (relative imports only: the code base uses no aliases). */
function reaching(part, depth, allowed) {
  const up = depth === 0 ? '^\\./' : `^(?:\\.\\./){${depth}}`;
  if (part.endsWith('.ts')) return `${up}${escape(part)}$`;
  // A part allowed only through one file (e.g. worker/protocol.ts): everything else in it is refused.
  const only = allowed.filter((entry) => entry.startsWith(`${part}/`)).map((entry) => escape(entry.slice(part.length + 1)));
  return only.length > 0 ? `${up}${escape(part)}/(?!(?:${only.join('|')})$)` : `${up}${escape(part)}(?:/|$)`;
}

function zoneConfigs() {
  const parts = Object.keys(ZONES);
  const configs = [];
  for (const [part, allowed] of Object.entries(ZONES)) {
    const refused = parts.filter((other) => other !== part && !allowed.includes(other));
    // A top-level file is at depth 0 (imports start with ./); src/<part>/x.ts at 1 (../), and so on.
    const depths = part.endsWith('.ts') ? [0] : Array.from({ length: MAX_DEPTH }, (_, index) => index + 1);
    for (const depth of depths) {
      const files = depth === 0 ? [`src/${part}`] : [`src/${part}/${'*/'.repeat(depth - 1)}*.ts`];
      configs.push({
        files,
        rules: {
          'no-restricted-imports': ['error', {
            patterns: refused.map((other) => ({
              regex: reaching(other, depth, allowed),
              message: `src/${part} may not import src/${other} (import zones: docs/ARCHITECTURE.md; allowed: ${allowed.join(', ') || 'nothing'}).`,
            })),
          }],
        },
      });
    }
  }
  return configs;
}

export default tseslint.config(
  { ignores: ['node_modules/', 'toolchains/*/node_modules/', '.kiln/', 'web/dist/', 'drizzle/', 'examples/**/target/', 'examples/**/node_modules/', 'sdk/**/node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Edge functions (http-component) run in StarlingMonkey: Service Worker globals, no Node.
    files: ['examples/js-*/**/*.js', 'test/**/fixtures/component-*/**/*.js', 'test/**/fixtures/hostile-component/**/*.js'],
    languageOptions: {
      globals: { addEventListener: 'readonly', Response: 'readonly', Request: 'readonly', Headers: 'readonly', URL: 'readonly', fetch: 'readonly', console: 'readonly' },
    },
  },
  ...zoneConfigs(),
);
