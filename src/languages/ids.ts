/**
 * The languages Kiln builds, listed once: the language registry, the API's
 * schemas, the CLI and kiln.toml parsing all read this list. A leaf module
 * (no imports) so the web UI and the API schemas can use it without pulling
 * in the build code.
 */
export const LANGUAGE_IDS = ['rust', 'c', 'assemblyscript', 'javascript', 'typescript'] as const;
export type LanguageId = (typeof LANGUAGE_IDS)[number];
