/**
 * A small `.gitignore` matcher for `kiln deploy`, so an upload holds what the
 * developer would commit rather than build output, editor files or secrets.
 *
 * Implemented (per gitignore(5)): comments and blank lines, `!` negation
 * (the last matching rule wins; deeper files win over shallower ones),
 * trailing `/` for directories only, patterns with a `/` anchored to their
 * file's directory and the others matching at any depth, `*`, `?`, `[...]`,
 * `**` (leading, trailing, between slashes), backslash escapes, trailing
 * spaces. Files read: `.gitignore` in the project and its subdirectories,
 * the `.gitignore` files of parent directories up to the enclosing git
 * repository's root (git applies those too), and `.kilnignore` (same syntax,
 * read after `.gitignore` in each directory, so it can re-include with `!`).
 *
 * Not implemented: `.git/info/exclude` and the global `core.excludesFile`
 * (they are per-machine, not part of the project).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const IGNORE_FILES = ['.gitignore', '.kilnignore'] as const;

export interface IgnoreRule {
  regex: RegExp;
  negate: boolean;
  directoryOnly: boolean;
  /** The line as written, for explanations. */
  source: string;
}

export function parseIgnoreFile(text: string): IgnoreRule[] {
  const rules: IgnoreRule[] = [];
  for (const rawLine of text.split(/\r?\n/)) {
    const rule = parseLine(rawLine);
    if (rule) rules.push(rule);
  }
  return rules;
}

function parseLine(rawLine: string): IgnoreRule | undefined {
  // Trailing spaces are dropped unless escaped with a backslash.
  let line = rawLine.replace(/(?<!\\)\s+$/, '');
  if (line === '' || line.startsWith('#')) return undefined;
  let negate = false;
  if (line.startsWith('!')) {
    negate = true;
    line = line.slice(1);
  }
  let directoryOnly = false;
  if (line.endsWith('/') && !line.endsWith('\\/')) {
    directoryOnly = true;
    line = line.replace(/\/+$/, '');
  }
  if (line === '') return undefined;
  // A slash at the start or in the middle ties the pattern to this directory.
  const anchored = line.includes('/');
  if (line.startsWith('/')) line = line.slice(1);
  const body = globToRegexSource(line);
  const regex = new RegExp(anchored ? `^${body}$` : `^(?:.*/)?${body}$`);
  return { regex, negate, directoryOnly, source: rawLine.trim() };
}

/** A glob as a regular expression over `/`-separated relative paths. */
export function globToRegexSource(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i] ?? '';
    if (char === '*') {
      const double = glob[i + 1] === '*';
      const startsSegment = i === 0 || glob[i - 1] === '/';
      const endsSegment = i + 2 >= glob.length || glob[i + 2] === '/';
      if (double && startsSegment && endsSegment) {
        if (i + 2 >= glob.length) {
          out += '.*'; // `a/**`: everything inside
          i += 1;
        } else {
          out += '(?:.*/)?'; // `**/` and `/**/`: zero or more directories
          i += 2;
        }
      } else {
        out += '[^/]*';
        if (double) i += 1; // other `**` are plain stars
      }
    } else if (char === '?') {
      out += '[^/]';
    } else if (char === '[') {
      const end = classEnd(glob, i);
      if (end < 0) out += '\\[';
      else {
        out += characterClass(glob.slice(i + 1, end));
        i = end;
      }
    } else if (char === '\\' && i + 1 < glob.length) {
      out += escapeRegex(glob[++i] ?? '');
    } else {
      out += escapeRegex(char);
    }
  }
  return out;
}

function classEnd(glob: string, open: number): number {
  let i = open + 1;
  if (glob[i] === '!' || glob[i] === '^') i++;
  if (glob[i] === ']') i++; // a leading ] is literal
  for (; i < glob.length; i++) if (glob[i] === ']') return i;
  return -1;
}

function characterClass(inner: string): string {
  let negated = false;
  if (inner.startsWith('!') || inner.startsWith('^')) {
    negated = true;
    inner = inner.slice(1);
  }
  const escaped = inner.replace(/[\\\]^]/g, (char) => `\\${char}`);
  // A class never matches the separator, as in git.
  return negated ? `[^/${escaped}]` : `(?!/)[${escaped}]`;
}

const escapeRegex = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

interface RuleSet {
  /** Maps a path relative to the packed root to one relative to the ignore file's directory, or undefined. */
  localPath: (relPath: string) => string | undefined;
  rules: IgnoreRule[];
}

export interface IgnoreFilter {
  /** The callback `packDirectory` takes: true leaves the path out. */
  ignore: (relPath: string, kind: 'file' | 'directory') => boolean;
  /** Paths left out by a rule (not counting what is under an ignored directory). */
  ignored: string[];
}

/**
 * `extraRules` are applied first (weakest), e.g. Kiln's own data directory;
 * project files can still override them with `!`.
 */
export function createIgnoreFilter(root: string, extraRules: string[] = []): IgnoreFilter {
  const absoluteRoot = path.resolve(root);
  const sets: RuleSet[] = [{ localPath: (relPath) => relPath, rules: parseIgnoreFile(extraRules.join('\n')) }, ...parentRuleSets(absoluteRoot)];
  const loaded = new Map<string, RuleSet[]>();
  const setsFor = (dirRel: string): RuleSet[] => {
    let found = loaded.get(dirRel);
    if (found === undefined) {
      found = readRuleSets(path.join(absoluteRoot, dirRel), dirRel);
      loaded.set(dirRel, found);
    }
    return found;
  };
  const ignored: string[] = [];
  const ignore = (relPath: string, kind: 'file' | 'directory'): boolean => {
    const applicable = [...sets, ...ancestorsOf(relPath).flatMap(setsFor)];
    const verdict = decide(applicable, relPath, kind);
    if (verdict) ignored.push(kind === 'directory' ? `${relPath}/` : relPath);
    return verdict;
  };
  return { ignore, ignored };
}

/** '', 'a', 'a/b' for 'a/b/c': the directories whose ignore files apply, outermost first. */
function ancestorsOf(relPath: string): string[] {
  const parts = relPath.split('/').slice(0, -1);
  return ['', ...parts.map((_, index) => parts.slice(0, index + 1).join('/'))];
}

function decide(sets: RuleSet[], relPath: string, kind: 'file' | 'directory'): boolean {
  let ignored = false;
  for (const set of sets) {
    const local = set.localPath(relPath);
    if (local === undefined) continue;
    for (const rule of set.rules) {
      if (rule.directoryOnly && kind !== 'directory') continue;
      if (rule.regex.test(local)) ignored = !rule.negate;
    }
  }
  return ignored;
}

function readRuleSets(dirAbsolute: string, dirRel: string): RuleSet[] {
  const prefix = dirRel === '' ? '' : `${dirRel}/`;
  const localPath = (relPath: string) => (relPath.startsWith(prefix) ? relPath.slice(prefix.length) : undefined);
  return IGNORE_FILES.flatMap((name) => {
    const text = readIfPresent(path.join(dirAbsolute, name));
    return text === undefined ? [] : [{ localPath, rules: parseIgnoreFile(text) }];
  });
}

/**
 * The .gitignore files between the enclosing repository's root and the
 * packed directory (exclusive), outermost first. None outside a repository:
 * a stray ~/.gitignore must not decide what a project uploads.
 */
function parentRuleSets(root: string): RuleSet[] {
  if (existsSync(path.join(root, '.git'))) return [];
  const parents: string[] = [];
  for (let dir = path.dirname(root); ; dir = path.dirname(dir)) {
    parents.unshift(dir);
    if (existsSync(path.join(dir, '.git'))) break;
    if (path.dirname(dir) === dir) return [];
  }
  return parents.flatMap((dir) => {
    const text = readIfPresent(path.join(dir, '.gitignore'));
    if (text === undefined) return [];
    const lead = path.relative(dir, root).split(path.sep).join('/');
    return [{ localPath: (relPath: string) => `${lead}/${relPath}`, rules: parseIgnoreFile(text) }];
  });
}

function readIfPresent(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}
