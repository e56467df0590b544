/**
 * Rust uploads with a `cargo vendor`-style vendor/, assembled at test time
 * from what the machine has (nothing third-party is committed):
 *   - real crates.io crates from the modern toolchain's source vendor/
 *     (hashbrown 0.15.2 and its dependencies, log 0.4.22), which carry the
 *     `.cargo-checksum.json` cargo vendor wrote, so cargo verifies every file;
 *   - the official `proxy-wasm` crate from a directory the operator
 *     provides (KILN_TEST_PROXY_WASM_SDK_DIR: its source, e.g. a checkout of
 *     proxy-wasm-rust-sdk at v0.2.3), since crates.io and GitHub are not
 *     reachable: checksums for its files are computed here, as cargo vendor
 *     would.
 */
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { toolchainsDir } from '../../src/config.ts';
import { isDirectory, listFiles } from '../../src/languages/files.ts';

export const MODERN_TOOLCHAIN = 'rust-1.85.0';
/** The crates.io crates the rustc-web source tarball vendors, kept by scripts/toolchains/rust-modern.sh. */
export const TOOLCHAIN_VENDOR_DIR = join(toolchainsDir(), MODERN_TOOLCHAIN, 'usr/lib/rustlib/src/rust/vendor');
/** proxy-wasm 0.2.3's dependencies (0.2.4+ need hashbrown 0.16, which the tarball lacks). */
export const HASHBROWN_CRATES = ['hashbrown-0.15.2', 'foldhash-0.1.4', 'equivalent-1.0.1', 'allocator-api2-0.2.21'];
export const LOG_CRATE = 'log-0.4.22';
export const OFFICIAL_SDK_ENV = 'KILN_TEST_PROXY_WASM_SDK_DIR';

const VENDOR_CONFIG = ['[source.crates-io]', 'replace-with = "vendored-sources"', '', '[source.vendored-sources]', 'directory = "vendor"', ''].join('\n');

/** Why the modern toolchain's vendored crates cannot be used here, or undefined when they can. */
export async function toolchainVendorMissing(): Promise<string | undefined> {
  for (const crate of [...HASHBROWN_CRATES, LOG_CRATE]) {
    if (!(await isDirectory(join(TOOLCHAIN_VENDOR_DIR, crate)))) return `${TOOLCHAIN_VENDOR_DIR}/${crate} is missing: run scripts/toolchains/rust-modern.sh`;
  }
  return undefined;
}

/** Why the official SDK test cannot run, or the crate's directory. */
export async function officialSdkDir(): Promise<{ dir: string } | { missing: string }> {
  const dir = process.env[OFFICIAL_SDK_ENV];
  if (dir === undefined || dir === '') {
    return { missing: `${OFFICIAL_SDK_ENV} is not set: the official proxy-wasm crate is not on crates.io-less machines (point it at a proxy-wasm-rust-sdk v0.2.3 source tree)` };
  }
  const manifest = await readFile(join(dir, 'Cargo.toml'), 'utf8').catch(() => '');
  const version = /^version\s*=\s*"(0\.2\.[0-3])"/m.exec(manifest)?.[1];
  if (!/^name\s*=\s*"proxy-wasm"/m.test(manifest) || version === undefined) return { missing: `${dir} holds no proxy-wasm 0.2.0–0.2.3 crate` };
  return { dir };
}

async function writeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

async function vendorFromToolchain(root: string, crates: string[]): Promise<void> {
  for (const crate of crates) await cp(join(TOOLCHAIN_VENDOR_DIR, crate), join(root, 'vendor', crate), { recursive: true });
}

/** What cargo vendor writes: a sha256 per file; no package checksum (there is no .crate file). */
async function vendorWithChecksums(from: string, to: string): Promise<void> {
  await cp(from, to, { recursive: true, filter: (path) => !/\/(target|\.git|bazel|examples)$/.test(path) });
  const files: Record<string, string> = {};
  for (const file of (await listFiles(to)).sort()) {
    files[file] = createHash('sha256').update(await readFile(join(to, file))).digest('hex');
  }
  await writeFile(join(to, '.cargo-checksum.json'), JSON.stringify({ files, package: null }));
}

const FILTER_PROFILE = ['[profile.release]', 'lto = true', 'opt-level = "s"', 'codegen-units = 1', 'panic = "abort"', ''].join('\n');

/**
 * A filter on Kiln's SDK that counts request headers in a hashbrown map and
 * logs through the `log` facade: real third-party crates, vendored with
 * their checksums, built by the modern toolchain (edition 2021, no lock).
 */
export async function writeHashbrownFilter(root: string): Promise<void> {
  await writeFiles(root, {
    'Cargo.toml': [
      '[package]',
      'name = "hashbrown-filter"',
      'version = "0.1.0"',
      'edition = "2021"',
      '',
      '[lib]',
      'crate-type = ["cdylib"]',
      '',
      '[dependencies]',
      'kiln-proxy-wasm = "0.1"',
      'hashbrown = "0.15"',
      'log = "0.4"',
      '',
      FILTER_PROFILE,
    ].join('\n'),
    '.cargo/config.toml': VENDOR_CONFIG,
    'src/lib.rs': `use hashbrown::HashMap;
use kiln_proxy_wasm::{set_http_context, Action, Context, HttpContext};

struct CountHeaders;
impl Context for CountHeaders {}
impl HttpContext for CountHeaders {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (name, _) in self.get_http_request_headers() {
            *seen.entry(name).or_default() += 1;
        }
        let distinct = seen.len().to_string();
        self.add_http_request_header("x-distinct-headers", &distinct);
        log::info!("hashbrown-filter: {} distinct headers", distinct);
        kiln_proxy_wasm::log(kiln_proxy_wasm::LogLevel::Info, &format!("hashbrown-filter: {} distinct headers", distinct));
        Action::Continue
    }
}

kiln_proxy_wasm::main! {
    set_http_context(|_context_id, _root_context_id| Box::new(CountHeaders));
}
`,
  });
  await vendorFromToolchain(root, [...HASHBROWN_CRATES, LOG_CRATE]);
}

/** Changes one byte of a vendored file after the fact: cargo must refuse the crate. */
export async function tamperWithVendoredCrate(root: string, crate: string, file: string): Promise<void> {
  const path = join(root, 'vendor', crate, file);
  await writeFile(path, `${await readFile(path, 'utf8')}\n// tampered\n`);
}

/**
 * A filter written against the official `proxy-wasm` crate the way its own
 * examples are: a root context creating HTTP contexts; request headers
 * (read all, add one), a local response on /hello, a response header, the
 * request body (upper-cased), an HTTP call to the test bed's echo upstream
 * with its response read in the callback, a property, and ticks on the root
 * context.
 */
export async function writeOfficialSdkFilter(root: string, sdkDir: string): Promise<void> {
  const manifest = await readFile(join(sdkDir, 'Cargo.toml'), 'utf8');
  const version = /^version\s*=\s*"([^"]+)"/m.exec(manifest)?.[1] ?? '0.2.3';
  await writeFiles(root, {
    'Cargo.toml': [
      '[package]',
      'name = "official-sdk-filter"',
      'version = "0.1.0"',
      'edition = "2021"',
      '',
      '[lib]',
      'crate-type = ["cdylib"]',
      '',
      '[dependencies]',
      `proxy-wasm = "=${version}"`,
      'log = "0.4"',
      '',
      FILTER_PROFILE,
    ].join('\n'),
    '.cargo/config.toml': VENDOR_CONFIG,
    'src/lib.rs': OFFICIAL_FILTER_SOURCE,
  });
  await vendorFromToolchain(root, [...HASHBROWN_CRATES, LOG_CRATE]);
  await vendorWithChecksums(sdkDir, join(root, 'vendor', `proxy-wasm-${version}`));
}

const OFFICIAL_FILTER_SOURCE = `use log::info;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { ticks: 0 }) });
}}

struct Root {
    ticks: u32,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        info!("official-sdk-filter: vm started");
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        info!("official-sdk-filter: configured with {:?}", String::from_utf8_lossy(&configuration));
        self.set_tick_period(Duration::from_millis(1000));
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Ok(Some(message)) = self.dequeue_shared_queue(queue_id) {
            info!("official-sdk-filter: queue said {:?}", String::from_utf8_lossy(&message));
        }
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        info!("official-sdk-filter: tick {}", self.ticks);
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Headers { context_id }))
    }
}

struct Headers {
    context_id: u32,
}

impl Context for Headers {
    fn on_http_call_response(&mut self, token_id: u32, _: usize, body_size: usize, _: usize) {
        let status = self.get_http_call_response_header(":status").unwrap_or_default();
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        info!("official-sdk-filter: call {} answered {} with {} bytes", token_id, status, body.len());
        self.add_http_request_header("x-call-status", &status);
        self.resume_http_request();
    }
}

impl HttpContext for Headers {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let count = self.get_http_request_headers().len();
        info!("official-sdk-filter: #{} saw {} request headers", self.context_id, count);
        match self.get_http_request_header(":path").as_deref() {
            Some("/hello") => {
                self.send_http_response(200, vec![("powered-by", "proxy-wasm")], Some(b"Hello, World!\\n"));
                return Action::Pause;
            }
            Some("/state") => {
                // Shared data with compare-and-swap, a shared queue, a counter metric, the clock.
                let (old, cas) = self.get_shared_data("visits");
                let visits = old.map(|bytes| bytes.len()).unwrap_or(0) + 1;
                let stored = self.set_shared_data("visits", Some(&vec![b'v'; visits]), cas).is_ok();
                let queue = self.register_shared_queue("official-events");
                let queued = self.enqueue_shared_queue(queue, Some(b"visited")).is_ok();
                let counter = proxy_wasm::hostcalls::define_metric(MetricType::Counter, "official_visits")
                    .and_then(|id| proxy_wasm::hostcalls::increment_metric(id, 1).map(|_| id))
                    .and_then(proxy_wasm::hostcalls::get_metric);
                let now = self.get_current_time().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                info!("official-sdk-filter: visits {} stored {} queued {} counter {:?} clock set {}", visits, stored, queued, counter, now > 1_600_000_000);
            }
            Some("/call") => {
                let headers = vec![(":method", "GET"), (":path", "/ping"), (":authority", "echo")];
                return match self.dispatch_http_call("echo", headers, None, vec![], Duration::from_secs(5)) {
                    Ok(_) => Action::Pause,
                    Err(status) => {
                        info!("official-sdk-filter: call refused: {:?}", status);
                        Action::Continue
                    }
                };
            }
            _ => {}
        }
        self.add_http_request_header("x-official-sdk", "request");
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(body) = self.get_http_request_body(0, body_size) {
            self.set_http_request_body(0, body_size, &body.to_ascii_uppercase());
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-official-sdk", Some("response"));
        Action::Continue
    }

    fn on_log(&mut self) {
        let protocol = self
            .get_property(vec!["request", "protocol"])
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|| "unknown".to_string());
        info!("official-sdk-filter: #{} completed ({})", self.context_id, protocol);
    }
}
`;
