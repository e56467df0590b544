/**
 * Small Rust projects written by the tests, each exercising one rule of the
 * offline set-up. They depend on `itoa` from the operator's registry
 * (Debian's crates) because it builds in a second.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

type Files = Record<string, string>;

async function writeFiles(root: string, files: Files): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

function manifest(name: string, dependencies: string[]): string {
  return [`[package]`, `name = "${name}"`, `version = "0.1.0"`, `edition = "2021"`, ``, `[dependencies]`, ...dependencies, ``].join('\n');
}

/** Prints `<n> bytes` for its stdin, formatted by itoa. */
const COUNT_MAIN = `use std::io::Read;
fn main() {
    let mut input = Vec::new();
    std::io::stdin().read_to_end(&mut input).unwrap();
    let mut buffer = itoa::Buffer::new();
    println!("{} bytes", buffer.format(input.len()));
}
`;

/**
 * An upload whose .cargo/config.toml points crates.io at a network mirror
 * and a rustc wrapper, plus a rust-toolchain.toml whose channel (`stable`)
 * is the only part Kiln reads: its `path` to a custom toolchain and its
 * components are ignored. Were any of the rest honoured, the build would fail.
 */
export async function writeHostileConfigProject(root: string): Promise<void> {
  await writeFiles(root, {
    'Cargo.toml': manifest('hostile-config', ['itoa = "1"']),
    'src/main.rs': COUNT_MAIN,
    '.cargo/config.toml': [
      '[source.crates-io]',
      'replace-with = "mirror"',
      '[source.mirror]',
      'registry = "sparse+https://crates.example.invalid/index/"',
      '[net]',
      'offline = false',
      '[build]',
      'rustc-wrapper = "/build/src/wrapper.sh"',
      '',
    ].join('\n'),
    'rust-toolchain.toml': '[toolchain]\nchannel = "stable"\npath = "/build/src/evil-toolchain"\ncomponents = ["rust-src"]\n',
  });
}

/** A Cargo.lock naming an itoa release the offline registry does not have. */
export async function writeStaleLockProject(root: string): Promise<void> {
  await writeFiles(root, {
    'Cargo.toml': manifest('stale-lock', ['itoa = "1"']),
    'src/main.rs': COUNT_MAIN,
    'Cargo.lock': [
      'version = 3',
      '',
      '[[package]]',
      'name = "itoa"',
      'version = "1.0.999"',
      'source = "registry+https://github.com/rust-lang/crates.io-index"',
      `checksum = "${'0'.repeat(64)}"`,
      '',
      '[[package]]',
      'name = "stale-lock"',
      'version = "0.1.0"',
      'dependencies = [',
      ' "itoa",',
      ']',
      '',
    ].join('\n'),
  });
}

const SHOUT_MANIFEST = '[package]\nname = "kiln-shout"\nversion = "0.1.0"\nedition = "2021"\n';
const SHOUT_LIB = 'pub fn shout(text: &str) -> String {\n    format!("{}!", text.trim().to_uppercase())\n}\n';

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * `cargo vendor` output for a crates.io crate the registry lacks
 * (kiln-shout, with the file checksums cargo verifies) next to a dependency
 * the registry provides (itoa), and the .cargo/config.toml `cargo vendor`
 * asks authors to add (ignored: Kiln's own set-up covers vendor/).
 */
export async function writeVendoredProject(root: string): Promise<void> {
  const checksum = { files: { 'Cargo.toml': sha256(SHOUT_MANIFEST), 'src/lib.rs': sha256(SHOUT_LIB) }, package: sha256('kiln-shout-0.1.0') };
  await writeFiles(root, {
    'Cargo.toml': manifest('vendored', ['itoa = "1"', 'kiln-shout = "0.1"']),
    'src/main.rs': `use std::io::Read;
fn main() {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).unwrap();
    let mut buffer = itoa::Buffer::new();
    println!("{} ({} bytes)", kiln_shout::shout(&input), buffer.format(input.len()));
}
`,
    'vendor/kiln-shout/Cargo.toml': SHOUT_MANIFEST,
    'vendor/kiln-shout/src/lib.rs': SHOUT_LIB,
    'vendor/kiln-shout/.cargo-checksum.json': JSON.stringify(checksum),
    '.cargo/config.toml': '[source.crates-io]\nreplace-with = "vendored-sources"\n\n[source.vendored-sources]\ndirectory = "vendor"\n',
  });
}
