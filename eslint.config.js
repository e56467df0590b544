import js from '@eslint/js';
import tseslint from 'typescript-eslint';

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
    files: ['examples/js-*/**/*.js', 'test/**/fixtures/component-*/**/*.js'],
    languageOptions: {
      globals: { addEventListener: 'readonly', Response: 'readonly', Request: 'readonly', Headers: 'readonly', URL: 'readonly', fetch: 'readonly', console: 'readonly' },
    },
  },
);
