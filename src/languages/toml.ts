/**
 * A deliberately small TOML reader for the few facts Kiln needs from
 * manifests (Cargo.toml, kiln.toml): package name and version, crate types,
 * `[package.metadata.kiln]`, `[[bin]]` names. No TOML package is installed
 * and the host must never run the project's own tooling to read its
 * manifest, so we parse the subset ourselves. Anything it does not
 * understand is skipped rather than guessed at.
 *
 * The result is flat: `{"package.name": "x", "lib.crate-type": ["cdylib"],
 * "bin.0.name": "tool"}`.
 */
export type TomlValue = string | boolean | number | string[];
export type TomlTable = Record<string, TomlValue>;

/** Manifests bigger than this are not worth reading for a few keys. */
const MAX_TOML_CHARS = 1024 * 1024;

export function parseToml(text: string): TomlTable {
  const result: TomlTable = {};
  const arrayCounts = new Map<string, number>();
  const lines = text.slice(0, MAX_TOML_CHARS).split(/\r?\n/);
  let prefix = '';
  for (let index = 0; index < lines.length; index++) {
    const line = stripComment(lines[index] ?? '').trim();
    if (line === '') continue;
    const header = /^\[\[\s*([^\]]+?)\s*\]\]$/.exec(line) ?? /^\[\s*([^\]]+?)\s*\]$/.exec(line);
    if (header?.[1] !== undefined) {
      prefix = tableName(header[1], line.startsWith('[['), arrayCounts);
      continue;
    }
    const equals = findTopLevelEquals(line);
    if (equals < 0) continue;
    let rawValue = line.slice(equals + 1).trim();
    // Multi-line arrays (`crate-type = [\n "cdylib",\n]`) continue until the bracket closes.
    while (rawValue.startsWith('[') && !bracketsClosed(rawValue) && index + 1 < lines.length) {
      index++;
      rawValue += ' ' + stripComment(lines[index] ?? '').trim();
    }
    const value = parseValue(rawValue);
    const key = splitKey(line.slice(0, equals).trim()).join('.');
    if (value !== undefined && key !== '') result[prefix === '' ? key : `${prefix}.${key}`] = value;
  }
  return result;
}

export function tomlString(table: TomlTable, key: string): string | undefined {
  const value = table[key];
  return typeof value === 'string' ? value : undefined;
}

export function tomlStrings(table: TomlTable, key: string): string[] | undefined {
  const value = table[key];
  if (Array.isArray(value)) return value;
  return typeof value === 'string' ? [value] : undefined;
}

function tableName(raw: string, isArray: boolean, arrayCounts: Map<string, number>): string {
  const name = splitKey(raw).join('.');
  if (!isArray) return name;
  const count = arrayCounts.get(name) ?? 0;
  arrayCounts.set(name, count + 1);
  return `${name}.${count}`;
}

/** Splits `a."b.c".d` into its parts, unquoting quoted parts. */
function splitKey(raw: string): string[] {
  const parts: string[] = [];
  const pattern = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(?:\.|$)/gy;
  let match: RegExpExecArray | null;
  while (pattern.lastIndex < raw.length && (match = pattern.exec(raw)) !== null) {
    parts.push(match[1] ?? match[2] ?? match[3] ?? '');
  }
  return pattern.lastIndex === raw.length ? parts : [];
}

/** Removes a `#` comment that is not inside a string. */
function stripComment(line: string): string {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (quote !== undefined) {
      if (char === '\\' && quote === '"') i++;
      else if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") {
      quote = char;
    } else if (char === '#') {
      return line.slice(0, i);
    }
  }
  return line;
}

function findTopLevelEquals(line: string): number {
  let quote: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const char = line[i];
    if (quote !== undefined) {
      if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") {
      quote = char;
    } else if (char === '=') {
      return i;
    }
  }
  return -1;
}

function bracketsClosed(raw: string): boolean {
  let depth = 0;
  let quote: string | undefined;
  for (let i = 0; i < raw.length; i++) {
    const char = raw[i];
    if (quote !== undefined) {
      if (char === '\\' && quote === '"') i++;
      else if (char === quote) quote = undefined;
    } else if (char === '"' || char === "'") quote = char;
    else if (char === '[') depth++;
    else if (char === ']') depth--;
  }
  return depth <= 0;
}

function parseValue(raw: string): TomlValue | undefined {
  if (raw.startsWith('"') || raw.startsWith("'")) return parseString(raw);
  if (raw === 'true' || raw === 'false') return raw === 'true';
  if (/^[+-]?\d[\d_]*(\.\d+)?$/.test(raw)) return Number(raw.replace(/_/g, ''));
  if (raw.startsWith('[')) return parseStringArray(raw);
  return undefined;
}

function parseString(raw: string): string | undefined {
  const basic = /^"((?:[^"\\]|\\.)*)"/.exec(raw);
  if (basic?.[1] !== undefined) return unescape(basic[1]);
  const literal = /^'([^']*)'/.exec(raw);
  return literal?.[1];
}

function unescape(text: string): string {
  return text.replace(/\\(["\\nt])/g, (_all, char: string) => (char === 'n' ? '\n' : char === 't' ? '\t' : char));
}

/** Arrays of strings only: that is all the manifests we read contain. */
function parseStringArray(raw: string): string[] | undefined {
  const items: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|'([^']*)'/g;
  let match: RegExpExecArray | null;
  while ((match = pattern.exec(raw)) !== null) {
    items.push(match[1] !== undefined ? unescape(match[1]) : (match[2] ?? ''));
  }
  return items;
}
