/**
 * The vocabulary of Kiln's configuration: a setting is declared once (its
 * environment variable, its key in the config file, its type, its default
 * and what it means), and that one declaration is what the loader reads,
 * what validation names in its messages and what docs/configuration.md must
 * list (test/config-docs.test.ts compares the two). Declaring a setting is
 * the only way to add one, so the table cannot drift from the code.
 *
 * This module reads no environment itself: sources are handed in (src/config.ts
 * is the one place that hands in `process.env`).
 */

/** A value as a source gives it: the environment gives text, a JSON file may also give numbers, booleans or lists. */
export type RawValue = string | number | boolean | readonly string[];

/** A bad setting: the operator's fault, reported as one line naming the setting (never a stack trace). */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface Setting<T> {
  /** Environment variable; the name messages use. */
  readonly env: string;
  /** Other variables read when `env` is unset (conventional names such as PORT), in order. */
  readonly aliases?: readonly string[];
  /** Dotted key in the config file (`testbed.maxHeaderCount` is `{"testbed": {"maxHeaderCount": …}}`). */
  readonly key: string;
  /** For the table: e.g. `integer 1–64`. */
  readonly type: string;
  /** For the table: the default as an operator reads it (computed defaults say how). */
  readonly defaultText: string;
  readonly description: string;
  /** The embedded default; `undefined` when there is none or the section computes it. */
  readonly fallback: T;
  /** Turns a raw value into the setting's value; throws an Error whose message says what was expected. */
  parse(raw: RawValue): T;
}

/** Any setting, for lists (the docs table, the file's known keys). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- variance only: every Setting<T> is listed here
export type AnySetting = Setting<any>;

interface Declaration<T> {
  env: string;
  aliases?: readonly string[];
  key: string;
  description: string;
  fallback: T;
  defaultText?: string;
}

function describe(raw: RawValue): string {
  return JSON.stringify(raw);
}

function text(raw: RawValue): string {
  if (Array.isArray(raw)) return raw.join(',');
  return String(raw);
}

export function integerSetting<T extends number | undefined>(declaration: Declaration<T> & { min: number; max?: number }): Setting<number | T> {
  const { min, max = Number.MAX_SAFE_INTEGER } = declaration;
  const range = max === Number.MAX_SAFE_INTEGER ? `integer ≥ ${min}` : `integer ${min}–${max}`;
  return {
    ...declaration,
    type: range,
    defaultText: declaration.defaultText ?? String(declaration.fallback),
    parse(raw) {
      const value = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
      if (!Number.isInteger(value) || value < min || value > max) throw new Error(`must be an ${range}, got ${describe(raw)}`);
      return value;
    },
  };
}

export function stringSetting<T extends string | undefined>(declaration: Declaration<T> & { type?: string; check?: (value: string) => string | undefined }): Setting<string | T> {
  return {
    ...declaration,
    type: declaration.type ?? 'string',
    defaultText: declaration.defaultText ?? (declaration.fallback === undefined ? 'none' : String(declaration.fallback)),
    parse(raw) {
      if (typeof raw !== 'string') throw new Error(`must be text, got ${describe(raw)}`);
      const problem = declaration.check?.(raw);
      if (problem !== undefined) throw new Error(problem);
      return raw;
    },
  };
}

export function booleanSetting(declaration: Declaration<boolean>): Setting<boolean> {
  return {
    ...declaration,
    type: 'boolean (true/false, 1/0)',
    defaultText: declaration.defaultText ?? String(declaration.fallback),
    parse(raw) {
      if (raw === true || raw === 'true' || raw === '1' || raw === 1) return true;
      if (raw === false || raw === 'false' || raw === '0' || raw === 0) return false;
      throw new Error(`must be true or false (or 1 or 0), got ${describe(raw)}`);
    },
  };
}

export function choiceSetting<C extends string>(declaration: Declaration<C> & { choices: readonly C[] }): Setting<C> {
  return {
    ...declaration,
    type: declaration.choices.join(' | '),
    defaultText: declaration.defaultText ?? declaration.fallback,
    parse(raw) {
      const value = text(raw);
      if (!(declaration.choices as readonly string[]).includes(value)) throw new Error(`must be one of ${declaration.choices.join(', ')}, got ${describe(raw)}`);
      return value as C;
    },
  };
}

/**
 * A setting with its own parser (URLs, lists). A file may give a list as a
 * JSON array; the parser then sees the items joined with commas, as the
 * environment variable would spell them.
 */
export function customSetting<T>(declaration: Declaration<T> & { type: string; defaultText: string; parseText: (value: string) => T }): Setting<T> {
  return { ...declaration, parse: (raw) => declaration.parseText(text(raw)) };
}

export type Env = Readonly<Record<string, string | undefined>>;
export type FileValues = ReadonlyMap<string, RawValue>;

/** Reads settings with the precedence environment > file > embedded default. */
export class SettingReader {
  constructor(
    private readonly env: Env,
    private readonly file: FileValues = new Map(),
    private readonly fileName = 'the config file',
  ) {}

  read<T>(setting: Setting<T>): T {
    for (const name of [setting.env, ...(setting.aliases ?? [])]) {
      const raw = this.env[name];
      // An empty variable counts as unset, as `KILN_X= kiln serve` means "no value" in a shell.
      if (raw !== undefined && raw !== '') return this.parse(setting, raw, name);
    }
    const fromFile = this.file.get(setting.key);
    if (fromFile !== undefined) return this.parse(setting, fromFile, `${setting.key} in ${this.fileName}`);
    return setting.fallback;
  }

  /** The raw environment value of a name that is not a setting of its own (e.g. XDG_CACHE_HOME for a computed default). */
  variable(name: string): string | undefined {
    const raw = this.env[name];
    return raw === '' ? undefined : raw;
  }

  private parse<T>(setting: Setting<T>, raw: RawValue, source: string): T {
    try {
      return setting.parse(raw);
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      const where = source === setting.env ? setting.env : `${setting.env} (${source})`;
      throw new ConfigError(`${where}: ${detail}`);
    }
  }
}
