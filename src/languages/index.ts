/**
 * The language registry. Adding a language means adding its folder and one
 * line in createLanguages() and DETECTION_ORDER.
 */
import type { Detection, Language, LanguageId } from './language.ts';
import { createAssemblyScript, type AssemblyScriptOptions } from './assemblyscript/index.ts';
import { createC } from './c/index.ts';
import { createJavaScript, type JavaScriptOptions } from './javascript/index.ts';
import { createRust, type RustOptions } from './rust/index.ts';

export type { AppKind, BuildContext, BuildStep, Detection, Language, LanguageId } from './language.ts';
export { APP_KINDS, LANGUAGE_IDS } from './language.ts';

/** Operator configuration of the toolchains. */
export interface LanguageOptions {
  rust?: RustOptions;
  assemblyscript?: AssemblyScriptOptions;
  javascript?: JavaScriptOptions;
}

export type LanguageRegistry = Readonly<Record<LanguageId, Language>>;

export function createLanguages(options: LanguageOptions = {}): LanguageRegistry {
  return {
    rust: createRust(options.rust),
    c: createC(),
    assemblyscript: createAssemblyScript(options.assemblyscript),
    javascript: createJavaScript('javascript', options.javascript),
    typescript: createJavaScript('typescript', options.javascript),
  };
}

/**
 * Most specific first: a Rust crate may carry C files for a build script and
 * an AssemblyScript project may carry a package.json (so it comes before
 * JavaScript/TypeScript, which also start from package.json), while C is
 * recognised by nothing more than *.c files.
 */
export const DETECTION_ORDER: readonly LanguageId[] = ['rust', 'assemblyscript', 'typescript', 'javascript', 'c'];

const defaultRegistry = createLanguages();

/** What the upload looks like (host side, reads a few files, runs nothing). */
export async function detectLanguage(sourceDir: string, registry: LanguageRegistry = defaultRegistry): Promise<Detection | undefined> {
  for (const id of DETECTION_ORDER) {
    const detection = await registry[id].detect(sourceDir);
    if (detection !== undefined) return detection;
  }
  return undefined;
}

/** Said when detection finds nothing; names what each language looks for. */
export const UNDETECTED_REASON = 'could not detect the language: no Cargo.toml, assembly/index.ts, asconfig.json, package.json main, src/index.ts|js or *.c/*.cc/*.cpp found';
