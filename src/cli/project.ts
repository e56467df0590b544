/**
 * What `kiln deploy` learns from a project directory before uploading it:
 * the application name, the version, the language and kind, and the
 * optional settings of `kiln.toml`. The language modules' own detection is
 * reused (it reads a few files and runs nothing), so the CLI and the worker
 * agree on what a project is.
 *
 * Precedence, strongest first: command-line flags, `kiln.toml`, the
 * language's manifest (`Cargo.toml` [package], `package.json`), then
 * defaults (the directory name; a dated pre-release version).
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { detectLanguage } from '../languages/index.ts';
import { APP_KINDS, LANGUAGE_IDS } from '../languages/language.ts';
import { parseToml, tomlString, type TomlTable } from '../languages/toml.ts';
import type { KindName, LanguageName, VersionMetadata } from './api-client.ts';

export const PHASES = ['request_headers', 'request_body', 'response_headers', 'response_body', 'log'] as const;
export type Phase = (typeof PHASES)[number];
export const WASM_OPT_LEVELS = ['off', 'O1', 'O2', 'O3', 'O4', 'Os', 'Oz'] as const;
export const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export type Optimize = NonNullable<VersionMetadata['optimize']>;

/** A fact and where it came from, so deploy can say "version 0.1.0 (Cargo.toml)". */
export interface Sourced<T> {
  value: T;
  from: string;
}

export interface Project {
  dir: string;
  name: Sourced<string>;
  version: Sourced<string>;
  language?: Sourced<LanguageName>;
  kind?: Sourced<KindName>;
  phases?: Phase[];
  config?: string;
  notes?: string;
  optimize?: Optimize;
}

/** Thrown for a project that cannot be deployed as it is; the message names the file and key. */
export class ProjectError extends Error {
  override name = 'ProjectError';
}

export async function readProject(dir: string, now = new Date()): Promise<Project> {
  const root = path.resolve(dir);
  const info = await stat(root).catch(() => undefined);
  if (!info?.isDirectory()) throw new ProjectError(`${dir} is not a directory: pass the directory of your project (kiln deploy ./my-app)`);
  const kilnToml = await readTomlFile(root, 'kiln.toml');
  const cargo = await readTomlFile(root, 'Cargo.toml');
  const packageJson = await readPackageJson(root);
  const detection = await detectLanguage(root);
  const from = (key: string) => `kiln.toml ${key}`;

  const name =
    sourced(tomlString(kilnToml ?? {}, 'name') ?? tomlString(kilnToml ?? {}, 'app'), from('name')) ??
    sourced(tomlString(cargo ?? {}, 'package.name'), 'Cargo.toml [package] name') ??
    sourced(packageJson?.name, 'package.json name') ?? { value: path.basename(root), from: 'the directory name' };
  const version =
    sourced(tomlString(kilnToml ?? {}, 'version'), from('version')) ??
    sourced(tomlString(cargo ?? {}, 'package.version'), 'Cargo.toml [package] version') ??
    sourced(packageJson?.version, 'package.json version') ?? { value: devVersion(now), from: 'none declared, so a dated pre-release' };

  return {
    dir: root,
    name: { value: applicationName(name.value), from: name.from },
    version,
    language: sourced(oneOf(kilnToml, 'language', LANGUAGE_IDS), from('language')) ?? sourced(detection?.language, 'detected'),
    kind: sourced(oneOf(kilnToml, 'kind', APP_KINDS), from('kind')) ?? sourced(detection?.kind, 'detected'),
    phases: phasesOf(kilnToml),
    config: await configOf(root, kilnToml),
    notes: kilnToml ? tomlString(kilnToml, 'notes') : undefined,
    optimize: optimizeOf(kilnToml),
  };
}

const sourced = <T>(value: T | undefined, from: string): Sourced<T> | undefined => (value === undefined ? undefined : { value, from });

/** `0.0.0-dev.20250102030405`: sorts by time and never collides with a release. */
export function devVersion(now: Date): string {
  return `0.0.0-dev.${now.toISOString().replace(/\D/g, '').slice(0, 14)}`;
}

/** Application names are `[a-z0-9][a-z0-9-]*`; manifests allow more (`@scope/Name_x`). */
export function applicationName(raw: string): string {
  const cleaned = raw
    .replace(/^@[^/]+\//, '')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .replace(/-+$/, '')
    .slice(0, 100);
  return cleaned || 'app';
}

async function readTomlFile(root: string, name: string): Promise<TomlTable | undefined> {
  const text = await readFile(path.join(root, name), 'utf8').catch(() => undefined);
  return text === undefined ? undefined : parseToml(text);
}

async function readPackageJson(root: string): Promise<{ name?: string; version?: string } | undefined> {
  const text = await readFile(path.join(root, 'package.json'), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProjectError(`package.json in ${root} is not valid JSON`);
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { name, version } = value as Record<string, unknown>;
  return { name: typeof name === 'string' ? name : undefined, version: typeof version === 'string' ? version : undefined };
}

function oneOf<T extends string>(table: TomlTable | undefined, key: string, allowed: readonly T[]): T | undefined {
  const value = table?.[key];
  if (value === undefined) return undefined;
  const found = allowed.find((candidate) => candidate === value);
  if (found === undefined) throw new ProjectError(`kiln.toml: ${key} = ${JSON.stringify(value)} is not one of ${allowed.join(', ')}`);
  return found;
}

function phasesOf(table: TomlTable | undefined): Phase[] | undefined {
  const value = table?.['phases'];
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value : [String(value)]).map((phase) => checkPhase(phase, 'kiln.toml: phases'));
}

export function checkPhase(phase: string, where: string): Phase {
  const found = PHASES.find((candidate) => candidate === phase);
  if (found === undefined) throw new ProjectError(`${where}: ${JSON.stringify(phase)} is not a phase; use ${PHASES.join(', ')}`);
  return found;
}

/** `config = "…"` inline, or `config-file = "path"` relative to the project. */
async function configOf(root: string, table: TomlTable | undefined): Promise<string | undefined> {
  const inline = table ? tomlString(table, 'config') : undefined;
  const file = table ? tomlString(table, 'config-file') : undefined;
  if (inline !== undefined && file !== undefined) throw new ProjectError('kiln.toml: set config or config-file, not both');
  if (file === undefined) return inline;
  const resolved = path.resolve(root, file);
  if (!resolved.startsWith(root + path.sep)) throw new ProjectError(`kiln.toml: config-file ${JSON.stringify(file)} must be inside the project`);
  return readFile(resolved, 'utf8').catch(() => {
    throw new ProjectError(`kiln.toml: config-file ${JSON.stringify(file)} cannot be read`);
  });
}

function optimizeOf(table: TomlTable | undefined): Optimize | undefined {
  if (!table) return undefined;
  const optimize: Optimize = {};
  const flag = (key: string): boolean | undefined => {
    const value = table[`optimize.${key}`];
    if (value === undefined || typeof value === 'boolean') return value;
    throw new ProjectError(`kiln.toml: optimize.${key} must be true or false`);
  };
  const strip = flag('strip');
  const wizer = flag('wizer');
  if (strip !== undefined) optimize.strip = strip;
  if (wizer !== undefined) optimize.wizer = wizer;
  const level = oneOf(table, 'optimize.wasm-opt', WASM_OPT_LEVELS);
  if (level !== undefined) optimize.wasmOpt = level;
  const cap = table['optimize.memory-cap-pages'];
  if (cap !== undefined) optimize.memoryCapPages = memoryCapPages(cap, 'kiln.toml: optimize.memory-cap-pages');
  return Object.keys(optimize).length > 0 ? optimize : undefined;
}

export function memoryCapPages(value: unknown, where: string): number {
  const pages = typeof value === 'string' ? Number(value) : value;
  if (typeof pages !== 'number' || !Number.isInteger(pages) || pages < 1 || pages > 65536) throw new ProjectError(`${where}: expected a whole number of 64 KiB pages from 1 to 65536`);
  return pages;
}
