/**
 * The kinds of app, listed once: the kind rules (kind.ts), the languages,
 * the API's schemas and the CLI read this list. The kind is a property of
 * the module (its imports and exports), so it lives with the Wasm rules; a
 * leaf module so the API schemas and the web UI can use it.
 */
export const APP_KINDS = ['proxy-wasm', 'wasi-command', 'http-component'] as const;
export type AppKind = (typeof APP_KINDS)[number];
