/**
 * The CLI's client-side settings: the one place the `kiln` commands read the
 * environment (the server's settings are loaded by src/config.ts). Only the
 * names below are taken; every other module of src/cli/ receives them.
 *
 *   KILN_URL, KILN_TOKEN       which API, as whom (over the stored login; see config.ts)
 *   KILN_WORKER_TOKEN          the token of `kiln worker` / `kiln testbed`
 *   KILN_CONFIG                the login file (default $XDG_CONFIG_HOME/kiln/config.json)
 *   XDG_CONFIG_HOME, HOME      where that file lives by default
 *   KILN_DATA_DIR              where a local `kiln serve` keeps its token (the CLI finds it)
 *   NO_COLOR, FORCE_COLOR, TERM  colours (no-color.org)
 *   KILN_DEBUG                 print stack traces of unexpected errors
 */
export const CLIENT_VARIABLES = ['KILN_URL', 'KILN_TOKEN', 'KILN_WORKER_TOKEN', 'KILN_CONFIG', 'XDG_CONFIG_HOME', 'HOME', 'KILN_DATA_DIR', 'NO_COLOR', 'FORCE_COLOR', 'TERM', 'KILN_DEBUG'] as const;

export type ClientVariable = (typeof CLIENT_VARIABLES)[number];
export type ClientEnvironment = Readonly<Partial<Record<ClientVariable, string>>>;

let snapshot: ClientEnvironment | undefined;

/** The client-side variables, read once per process. */
export function clientEnvironment(): ClientEnvironment {
  snapshot ??= Object.freeze(Object.fromEntries(CLIENT_VARIABLES.flatMap((name) => (process.env[name] === undefined ? [] : [[name, process.env[name]]]))));
  return snapshot;
}
