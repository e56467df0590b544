/**
 * File names in a synced directory: `<owner>.<application>.wasm`.
 *
 * Application names are unique per owner only, so the owner is part of the
 * name (an all-owners edge token would otherwise let two owners' "auth"
 * filters overwrite each other). Application names cannot contain a dot, so
 * the last dot before `.wasm` always separates the two: distinct
 * (owner, application) pairs never share a file name. Both parts are
 * checked against the API's own name rules here, because a manifest is
 * input: a name like `../../etc/passwd` must never become a path.
 */
const OWNER = '[a-z0-9][a-z0-9._-]{0,99}';
const APPLICATION = '[a-z0-9][a-z0-9-]{0,99}';
const OWNER_REGEX = new RegExp(`^${OWNER}$`);
const APPLICATION_REGEX = new RegExp(`^${APPLICATION}$`);
const FILE_REGEX = new RegExp(`^${OWNER}\\.${APPLICATION}\\.wasm$`);

export const INDEX_FILE = 'index.json';

/** undefined when either name could not be a Kiln name (and so must not become a file). */
export function fileNameFor(owner: string, application: string): string | undefined {
  if (!OWNER_REGEX.test(owner) || !APPLICATION_REGEX.test(application)) return undefined;
  return `${owner}.${application}.wasm`;
}

/** Only such names are ever replaced or removed: never a path, never the operator's other files. */
export const isArtifactFileName = (name: string): boolean => FILE_REGEX.test(name);
