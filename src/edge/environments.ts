/**
 * Deployment environments. Names are short, lower-case and safe in a path,
 * a file name and a query string; the set is closed (configured by the
 * operator) so that a typo in `--env prodution` is an error, not a new,
 * silently empty environment.
 */
export const ENVIRONMENT_PATTERN = '^[a-z][a-z0-9-]{0,31}$';
const ENVIRONMENT_REGEX = new RegExp(ENVIRONMENT_PATTERN);

export const DEFAULT_ENVIRONMENTS: readonly string[] = ['staging', 'production'];

export const isEnvironmentName = (name: string): boolean => ENVIRONMENT_REGEX.test(name);

/**
 * The default environments plus the comma-separated names of `raw`
 * (KILN_ENVIRONMENTS). Returns the offending name instead of throwing, so
 * the caller reports it in its own error type.
 */
export function parseEnvironments(raw: string | undefined): { environments: string[] } | { invalid: string } {
  const extra = (raw ?? '')
    .split(',')
    .map((name) => name.trim())
    .filter((name) => name.length > 0);
  const invalid = extra.find((name) => !isEnvironmentName(name));
  if (invalid !== undefined) return { invalid };
  return { environments: [...new Set([...DEFAULT_ENVIRONMENTS, ...extra])] };
}
