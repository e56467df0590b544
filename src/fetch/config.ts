import { existsSync } from 'node:fs';
/**
 * Operator configuration of the dependency fetch phase (worker side: the
 * registries are reached from the worker's machine). Read from the
 * environment; documented in README.md's configuration table.
 */
import { isAbsolute } from 'node:path';
import { DEFAULT_EGRESS_LIMITS, type EgressLimits } from './egress-proxy.ts';

export interface FetchConfig {
  /** npm registry (KILN_NPM_REGISTRY, default https://registry.npmjs.org/). */
  npmRegistry: URL;
  /**
   * Cargo sparse registry mirror (KILN_CARGO_REGISTRY, `sparse+https://…/`);
   * unset: Rust builds use only Debian's crates and what the upload vendors.
   */
  cargoRegistry?: URL;
  /** Wall time of one fetch step (KILN_FETCH_TIMEOUT_MS, default 5 min; the build's own wall limit still applies). */
  wallMs: number;
  /**
   * Extra CA certificates the fetch tools trust (KILN_FETCH_CA_FILE, default
   * the worker's own NODE_EXTRA_CA_CERTS, else Debian's CA bundle): for registries behind a
   * TLS-inspecting gateway or with a private CA. TLS runs end to end between
   * the tool and the registry; the egress proxy never sees plaintext.
   */
  caFile?: string;
  /** Egress bounds (KILN_FETCH_MAX_DOWNLOAD_BYTES, default 512 MiB; connections, idle and connect time fixed). */
  egress: EgressLimits;
}

export const DEFAULT_NPM_REGISTRY = 'https://registry.npmjs.org/';
export const DEFAULT_FETCH_WALL_MS = 5 * 60_000;

type Env = Record<string, string | undefined>;

export class FetchConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FetchConfigError';
  }
}

export function loadFetchConfig(env: Env = process.env): FetchConfig {
  const cargo = env.KILN_CARGO_REGISTRY;
  return {
    npmRegistry: registryUrl('KILN_NPM_REGISTRY', env.KILN_NPM_REGISTRY || DEFAULT_NPM_REGISTRY),
    cargoRegistry: cargo ? cargoRegistryUrl(cargo) : undefined,
    wallMs: positiveInteger(env, 'KILN_FETCH_TIMEOUT_MS', DEFAULT_FETCH_WALL_MS),
    caFile: caFile(env.KILN_FETCH_CA_FILE || env.NODE_EXTRA_CA_CERTS || systemCaBundle()),
    egress: { ...DEFAULT_EGRESS_LIMITS, downloadBytes: positiveInteger(env, 'KILN_FETCH_MAX_DOWNLOAD_BYTES', DEFAULT_EGRESS_LIMITS.downloadBytes) },
  };
}

function registryUrl(name: string, raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FetchConfigError(`${name}: ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new FetchConfigError(`${name}: the registry must be an http(s) URL`);
  if (url.username !== '' || url.password !== '') throw new FetchConfigError(`${name}: credentials in the URL are not supported`);
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
}

/** Cargo names sparse registries `sparse+https://…/`; the prefix is optional here. */
function cargoRegistryUrl(raw: string): URL {
  return registryUrl('KILN_CARGO_REGISTRY', raw.replace(/^sparse\+/, ''));
}

/**
 * Debian's CA bundle, when the worker names none: the sandbox has no /etc/ssl
 * of its own, and npm's global config on this machine kind points its
 * `cafile` there (a TLS-inspecting gateway's CA is added to that bundle).
 */
export const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

function systemCaBundle(): string | undefined {
  return existsSync(SYSTEM_CA_BUNDLE) ? SYSTEM_CA_BUNDLE : undefined;
}

function caFile(path: string | undefined): string | undefined {
  if (path === undefined || path === '') return undefined;
  if (!isAbsolute(path)) throw new FetchConfigError(`KILN_FETCH_CA_FILE: ${JSON.stringify(path)} must be an absolute path`);
  return path;
}

function positiveInteger(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new FetchConfigError(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}
