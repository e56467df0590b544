/**
 * Operator configuration of the dependency fetch phase (worker side: the
 * registries are reached from the worker's machine): the `fetch` section of
 * KilnConfig, declared in FETCH_SETTINGS and documented in
 * docs/configuration.md. A worker process loads it once (src/config.ts) and
 * hands it to every build.
 */
import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { ConfigError, customSetting, integerSetting, SettingReader, type Env } from '../config/settings.ts';
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

/** One error type for every bad setting; kept under this name for the fetch phase's callers. */
export const FetchConfigError = ConfigError;
export type FetchConfigError = ConfigError;

export const FETCH_SETTINGS = {
  npmRegistry: customSetting<URL | undefined>({
    env: 'KILN_NPM_REGISTRY',
    key: 'fetch.npmRegistry',
    type: 'http(s) URL',
    // Computed per load (below): URLs are mutable, so no two configs share one.
    fallback: undefined,
    defaultText: DEFAULT_NPM_REGISTRY,
    description: 'npm registry the fetch phase installs locked dependencies from',
    parseText: (raw) => registryUrl(raw),
  }),
  cargoRegistry: customSetting<URL | undefined>({
    env: 'KILN_CARGO_REGISTRY',
    key: 'fetch.cargoRegistry',
    type: 'sparse registry URL',
    fallback: undefined,
    defaultText: "none (Debian's crates and what the upload vendors)",
    description: 'Cargo sparse registry mirror (`sparse+https://…/`)',
    // Cargo names sparse registries `sparse+https://…/`; the prefix is optional here.
    parseText: (raw) => registryUrl(raw.replace(/^sparse\+/, '')),
  }),
  wallMs: integerSetting({ env: 'KILN_FETCH_TIMEOUT_MS', key: 'fetch.wallMs', fallback: DEFAULT_FETCH_WALL_MS, min: 1, defaultText: '300000 (5 min)', description: "Wall time of one fetch step, ms (the build's own wall limit still applies)" }),
  caFile: customSetting<string | undefined>({
    env: 'KILN_FETCH_CA_FILE',
    // The worker's own extra CAs are the natural default: a TLS-inspecting gateway's CA is usually there.
    aliases: ['NODE_EXTRA_CA_CERTS'],
    key: 'fetch.caFile',
    type: 'absolute path',
    fallback: undefined,
    defaultText: "NODE_EXTRA_CA_CERTS, else Debian's CA bundle",
    description: 'Extra CA certificates the fetch tools trust (TLS runs end to end; the egress proxy never sees plaintext)',
    parseText: caFile,
  }),
  downloadBytes: integerSetting({ env: 'KILN_FETCH_MAX_DOWNLOAD_BYTES', key: 'fetch.maxDownloadBytes', fallback: DEFAULT_EGRESS_LIMITS.downloadBytes, min: 1, description: 'Bytes one fetch step may download through the egress proxy' }),
} as const;

export function fetchConfigFrom(reader: SettingReader): FetchConfig {
  const s = FETCH_SETTINGS;
  return {
    npmRegistry: reader.read(s.npmRegistry) ?? registryUrl(DEFAULT_NPM_REGISTRY),
    cargoRegistry: reader.read(s.cargoRegistry),
    wallMs: reader.read(s.wallMs),
    caFile: reader.read(s.caFile) ?? systemCaBundle(),
    egress: { ...DEFAULT_EGRESS_LIMITS, downloadBytes: reader.read(s.downloadBytes) },
  };
}

/** The section alone, from the variables given (tests, library defaults); a worker gets it from loadConfig().fetch. */
export function loadFetchConfig(env: Env = {}): FetchConfig {
  return fetchConfigFrom(new SettingReader(env));
}

function registryUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('the registry must be an http(s) URL');
  if (url.username !== '' || url.password !== '') throw new Error('credentials in the URL are not supported');
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return url;
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

function caFile(path: string): string | undefined {
  if (path === '') return undefined;
  if (!isAbsolute(path)) throw new Error(`${JSON.stringify(path)} must be an absolute path`);
  return path;
}
