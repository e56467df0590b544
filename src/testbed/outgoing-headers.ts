/**
 * What a filter may put in a request that leaves Kiln (its proxy_http_call,
 * or the request it forwards upstream): checked before anything is written
 * to a socket, so a module cannot smuggle a second request to an allowed
 * upstream over a kept-alive connection.
 *
 * Names are normalized to lower case and must be RFC 9110 tokens; values may
 * not hold CR, LF, NUL or other control characters; Kiln alone frames the
 * message, so Host, Content-Length, Transfer-Encoding, Connection and the
 * other hop-by-hop headers are not the module's to set.
 */
import type { HeaderPairs } from './proxy-wasm/header-map.ts';

/** Connection-specific headers a proxy never forwards (RFC 9110 §7.6.1). */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'proxy-authorization', 'proxy-authenticate']);

/** Headers Kiln sets (or refuses) itself: framing, routing and protocol switches. */
export const KILN_OWNED: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'host', 'content-length', 'expect', 'http2-settings']);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
// Field values: visible characters, spaces, tabs and obs-text; never CR, LF, NUL or other controls.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const BAD_VALUE = /[\u0000-\u0008\u000a-\u001f\u007f]/;
// Origin-form: "/" then visible ASCII (anything else must be percent-encoded).
const ORIGIN_FORM = /^\/[\u0021-\u007e]*$/;

export function normalizeNames(pairs: HeaderPairs): HeaderPairs {
  return pairs.map(([key, value]) => [key.toLowerCase(), value]);
}

/** Why a (lower-cased) header cannot leave Kiln, or undefined. `pseudo` lists the pseudo-headers allowed. */
export function headerProblem(key: string, value: string, pseudo: ReadonlySet<string> = new Set()): string | undefined {
  if (key.startsWith(':')) return pseudo.has(key) ? valueProblem(key, value) : `${JSON.stringify(key)} is not a request pseudo-header`;
  if (!TOKEN.test(key)) return `header name ${JSON.stringify(key)} is not a valid token (letters, digits and !#$%&'*+-.^_\`|~ only)`;
  if (KILN_OWNED.has(key)) return `${JSON.stringify(key)} is set by Kiln, not by the module (no Host, Content-Length, Transfer-Encoding, Connection or hop-by-hop headers)`;
  return valueProblem(key, value);
}

function valueProblem(key: string, value: string): string | undefined {
  return BAD_VALUE.test(value) ? `the value of ${JSON.stringify(key)} contains CR, LF, NUL or another control character` : undefined;
}

export function firstHeaderProblem(pairs: HeaderPairs, pseudo?: ReadonlySet<string>): string | undefined {
  for (const [key, value] of pairs) {
    const problem = headerProblem(key, value, pseudo);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

export function methodProblem(method: string): string | undefined {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(method) ? undefined : `method ${JSON.stringify(method)} is not a valid token`;
}

export function pathProblem(path: string): string | undefined {
  return ORIGIN_FORM.test(path) ? undefined : `path ${JSON.stringify(path)} is not origin-form ("/" then visible ASCII; percent-encode the rest)`;
}
