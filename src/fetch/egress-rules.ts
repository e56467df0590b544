/**
 * Which destinations the fetch step's egress proxy lets through: exactly the
 * configured registry's scheme, host name and port, nothing else. Pure
 * functions, so the rules can be tested with an attacker's inputs without
 * a network.
 *
 * The sandboxed client is hostile (it parses an uploaded lock file), so:
 *   - names are compared exactly after lower-casing (no suffix match, no
 *     trailing dot, no IP literal standing in for a name, no userinfo);
 *   - CONNECT (a TLS tunnel) only to an https registry, plain absolute-URI
 *     requests only to an http registry: a tunnel to an http registry's port
 *     would let the client speak anything through it;
 *   - the proxy connects to the *allowed* host name itself and rewrites the
 *     Host header, so a Host header naming another server changes nothing.
 */

export interface EgressTarget {
  protocol: 'http:' | 'https:';
  /** Lower-case host name or IP literal as written in the configuration (IPv6 without brackets). */
  hostname: string;
  port: number;
}

export type EgressDecision = { allowed: true; target: EgressTarget } | { allowed: false; destination: string; reason: string };

/** The registry URL's scheme, host and port (default port filled in). */
export function egressTargetOf(url: URL): EgressTarget {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`registry ${url.href} must be an http or https URL`);
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  return { protocol: url.protocol, hostname: stripBrackets(url.hostname.toLowerCase()), port };
}

export function describeTarget(target: EgressTarget): string {
  return `${target.protocol}//${formatHost(target.hostname)}:${target.port}`;
}

// A DNS name or an IPv4 literal, or a bracketed IPv6 literal, then a decimal port.
const AUTHORITY = /^(?:([a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)|\[([0-9a-f:.]{2,45})\]):([0-9]{1,5})$/;

/** A CONNECT request's target (`host:port`). */
export function checkConnect(authority: string, allowed: readonly EgressTarget[]): EgressDecision {
  const shown = printable(authority);
  const match = AUTHORITY.exec(authority.toLowerCase());
  if (match === null) return refuse(shown, 'not a host:port');
  const hostname = match[1] ?? match[2] ?? '';
  const port = Number(match[3]);
  const target = allowed.find((candidate) => candidate.protocol === 'https:' && candidate.hostname === hostname && candidate.port === port);
  if (target !== undefined) return { allowed: true, target };
  return refuse(shown, notAllowed(allowed));
}

/** A plain proxy request's absolute URI (`http://host:port/path`). */
export function checkForwardUrl(rawUrl: string, allowed: readonly EgressTarget[]): EgressDecision {
  const shown = printable(rawUrl);
  if (!/^http:\/\//i.test(rawUrl)) return refuse(shown, 'only absolute http:// URIs can be forwarded (https goes through CONNECT)');
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    return refuse(shown, 'not a valid URL');
  }
  if (url.username !== '' || url.password !== '') return refuse(shown, 'credentials in the URL are not allowed');
  const hostname = stripBrackets(url.hostname.toLowerCase());
  const port = url.port === '' ? 80 : Number(url.port);
  const target = allowed.find((candidate) => candidate.protocol === 'http:' && candidate.hostname === hostname && candidate.port === port);
  if (target !== undefined) return { allowed: true, target };
  return refuse(`${formatHost(hostname)}:${port}`, notAllowed(allowed));
}

function refuse(destination: string, reason: string): EgressDecision {
  return { allowed: false, destination, reason };
}

function notAllowed(allowed: readonly EgressTarget[]): string {
  return `only the configured registry may be reached (${allowed.map(describeTarget).join(', ') || 'none'})`;
}

function stripBrackets(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

function formatHost(hostname: string): string {
  return hostname.includes(':') ? `[${hostname}]` : hostname;
}

/** For log lines: at most 200 printable ASCII characters of what the client sent. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, '?');
  return clean.length > 200 ? `${clean.slice(0, 199)}…` : clean;
}
